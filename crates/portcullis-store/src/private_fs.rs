//! Files only the server's user may read: the data directory (0700) and what
//! it holds (0600) — the SQLite database with its `-wal`/`-shm` files, the
//! master key, the dev mail outbox. SQLite gives its journal files the
//! database file's mode, so creating the database 0600 covers them.

use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700 (existing ones are
/// left as they are: the operator chose them).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` for writing, creating it with mode 0600 if it is missing.
pub fn create_file(path: &Path, create_new: bool) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).append(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
