//! An output file written whole or not at all: the text goes to a hidden `.NAME.partial`
//! beside it, which [`OutputFile::commit`] renames into place, so an interrupted run (Ctrl-C,
//! a full disk) neither leaves a cut-off file under the final name nor destroys the earlier
//! one.
//!
//! Only a regular file (or none yet) is replaced that way. A symbolic link is followed (the
//! file it names is replaced, the link stays); a device, a FIFO or a socket (`/dev/null`,
//! `/dev/stdout`, a named pipe) is written straight through, as a rename would replace the
//! device itself; a folder is refused at once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; see the module docs.
///
/// Dropped without [`commit`](OutputFile::commit) (an error on the way, a panic), it removes
/// its `.NAME.partial`, and the earlier file stays as it was. Errors of `create` name the file
/// that failed (the partial one); errors of writing and committing are the system's, for the
/// caller to name with the final [`path`](OutputFile::path).
#[derive(Debug)]
pub struct OutputFile {
    /// `None` only once committed.
    writer: Option<BufWriter<File>>,
    /// `(partial, final)` when written aside; `None` when written straight through.
    aside: Option<(PathBuf, PathBuf)>,
    /// The final name.
    path: PathBuf,
}

impl OutputFile {
    /// Opens the file to write (so a bad path fails at once, before any long work).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        match plan(path) {
            Plan::Folder => Err(annotate(
                path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder"),
            )),
            Plan::Straight(target) => Self::straight(&target),
            Plan::Aside(target, permissions) => Self::aside(&target, permissions),
        }
    }

    /// Flushes and, when written aside, renames the file into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer.flush()?;
        }
        let Some((partial, path)) = self.aside.take() else {
            return Ok(());
        };
        std::fs::rename(&partial, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })
    }

    fn straight(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path).map_err(|e| annotate(path, e))?;
        Ok(Self {
            writer: Some(BufWriter::new(file)),
            aside: None,
            path: path.to_path_buf(),
        })
    }

    /// Writes `dir/.NAME.partial` for `dir/NAME`, with the replaced file's permissions.
    fn aside(path: &Path, permissions: Option<std::fs::Permissions>) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".to_string());
        let partial = path.with_file_name(format!(".{name}.partial"));
        let file = File::create(&partial).map_err(|e| annotate(&partial, e))?;
        let out = Self {
            writer: Some(BufWriter::new(file)),
            aside: Some((partial.clone(), path.to_path_buf())),
            path: path.to_path_buf(),
        };
        if let (Some(permissions), Some(writer)) = (permissions, &out.writer) {
            // On failure `out` is dropped, which removes the partial file.
            writer
                .get_ref()
                .set_permissions(permissions)
                .map_err(|e| annotate(&partial, e))?;
        }
        Ok(out)
    }

    /// The file's final name (the symbolic link followed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("output file already committed"))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some((partial, _)) = self.aside.take() {
            // Close it first (and never flush a file being abandoned into a full disk).
            if let Some(writer) = self.writer.take() {
                let (file, _unwritten) = writer.into_parts();
                drop(file);
            }
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// Writes `path` through an [`OutputFile`]: `write` fills it, then it is renamed into place;
/// on any error the earlier file stays and the error names `path`.
pub fn write_aside(
    path: &Path,
    write: impl FnOnce(&mut OutputFile) -> std::io::Result<()>,
) -> crate::Result<()> {
    let io_error = |e| crate::TrainError::io(path, e);
    let mut file = OutputFile::create(path).map_err(io_error)?;
    write(&mut file).map_err(io_error)?;
    file.commit().map_err(io_error)
}

/// [`write_aside`] of a whole text: a reader (a rerun, a resume) finds the old file or the
/// whole new one, never half of it.
pub fn write_text_aside(path: &Path, text: &str) -> crate::Result<()> {
    write_aside(path, |file| file.write_all(text.as_bytes()))
}

/// How a path is written.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Refused: a folder.
    Folder,
    /// Opened and written in place (a device, a FIFO, a dangling link).
    Straight(PathBuf),
    /// Written beside this regular file (or file to be), then renamed over it.
    Aside(PathBuf, Option<std::fs::Permissions>),
}

fn plan(path: &Path) -> Plan {
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            // A dangling link: writing through it creates the file it names.
            Err(_) => return Plan::Straight(path.to_path_buf()),
        },
        _ => path.to_path_buf(),
    };
    match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => Plan::Folder,
        Ok(meta) if !meta.is_file() => Plan::Straight(target),
        Ok(meta) => Plan::Aside(target, Some(meta.permissions())),
        Err(_) => Plan::Aside(target, None),
    }
}

fn annotate(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_appears_whole_at_commit_and_an_earlier_one_survives_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        writeln!(out, "new").unwrap();
        // Not committed (an interrupted run): the earlier file is intact.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\n");
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(!dir.path().join(".out.txt.partial").exists());
    }

    #[test]
    fn an_abandoned_file_leaves_no_partial_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        writeln!(out, "new").unwrap();
        let partial = dir.path().join(".out.txt.partial");
        assert!(partial.exists());
        drop(out); // an error on the way: never committed
        assert!(!partial.exists());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\n");
        #[cfg(target_os = "linux")]
        if Path::new("/dev/full").exists() {
            // /dev/full is written through; the caller names it.
            let mut full = OutputFile::create(Path::new("/dev/full")).unwrap();
            let err = writeln!(full, "{}", "x".repeat(1 << 16)).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
            assert_eq!(full.path(), Path::new("/dev/full"));
        }
    }

    #[test]
    fn a_missing_folder_or_a_folder_fails_at_create_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = OutputFile::create(&dir.path().join("no/such/out.txt"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(".out.txt.partial"), "{err}");
        let err = OutputFile::create(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a folder"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_followed_and_a_device_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, "earlier\n").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut out = OutputFile::create(&link).unwrap();
        writeln!(out, "new").unwrap();
        out.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
        // A device is written in place, never renamed over (the plan only: a wrong one
        // must not replace this machine's /dev/null).
        let null = Path::new("/dev/null");
        assert_eq!(plan(null), Plan::Straight(null.to_path_buf()));
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere.txt"), &dangling).unwrap();
        assert_eq!(plan(&dangling), Plan::Straight(dangling.clone()));
    }
}
