//! An output file written whole or not at all: the text goes to a hidden `.NAME.partial`
//! beside it, which [`OutputFile::commit`] renames into place, so an interrupted run (Ctrl-C,
//! a full disk) neither leaves a cut-off file under the final name nor destroys the earlier
//! one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; see the module docs.
pub struct OutputFile {
    path: PathBuf,
    partial: PathBuf,
    writer: BufWriter<File>,
}

impl OutputFile {
    /// Opens the partial file beside `path` (so a bad folder fails at once).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let partial = partial_path(path);
        let file = File::create(&partial).map_err(|e| annotate(&partial, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            partial,
            writer: BufWriter::new(file),
        })
    }

    /// Flushes and renames the file into place.
    pub fn commit(self) -> std::io::Result<()> {
        let Self {
            path,
            partial,
            mut writer,
        } = self;
        writer.flush().map_err(|e| annotate(&partial, e))?;
        drop(writer);
        std::fs::rename(&partial, &path).map_err(|e| annotate(&path, e))
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

/// `dir/.NAME.partial` for `dir/NAME`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_string());
    path.with_file_name(format!(".{name}.partial"))
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
    fn a_missing_folder_fails_at_create_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = OutputFile::create(&dir.path().join("no/such/out.txt"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(".out.txt.partial"), "{err}");
    }
}
