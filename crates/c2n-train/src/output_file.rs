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
pub struct OutputFile {
    writer: BufWriter<File>,
    /// `(partial, final)` when written aside; `None` when written straight through.
    aside: Option<(PathBuf, PathBuf)>,
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
    pub fn commit(self) -> std::io::Result<()> {
        let Self { mut writer, aside } = self;
        let Some((partial, path)) = aside else {
            return writer.flush();
        };
        writer.flush().map_err(|e| annotate(&partial, e))?;
        drop(writer);
        std::fs::rename(&partial, &path).map_err(|e| annotate(&path, e))
    }

    fn straight(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path).map_err(|e| annotate(path, e))?;
        Ok(Self {
            writer: BufWriter::new(file),
            aside: None,
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
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)
                .map_err(|e| annotate(&partial, e))?;
        }
        Ok(Self {
            writer: BufWriter::new(file),
            aside: Some((partial, path.to_path_buf())),
        })
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
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
