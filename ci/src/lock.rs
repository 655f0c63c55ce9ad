//! One gate at a time per target directory. Two gates sharing one would
//! build into the same `target/release/rtmc` and stage their candidates at
//! the same `target/gate/rtmc-candidate`, each measuring the other's binary
//! without knowing it. The gate holds an advisory lock (`flock`) on
//! `<target>/gate/.lock` for its whole run; the file names the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::baseline::gate_dir;

/// Held for as long as the gate uses the target directory; the lock is
/// released when it is dropped (or the process ends, however it ends).
#[derive(Debug)]
pub struct TargetLock {
    _file: File,
    pub path: PathBuf,
}

/// Why the target directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another gate is using {target} ({holder}); two gates sharing one target directory would \
         swap each other's rtmc binaries. Wait for it, or give this one its own --target-dir"
    )]
    Busy { target: PathBuf, holder: String },
    #[error("locking {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Takes the target directory's gate lock, or says who holds it.
pub fn lock_target(target_dir: &Path) -> Result<TargetLock, LockError> {
    let dir = gate_dir(target_dir);
    let path = dir.join(".lock");
    let io = |e: std::io::Error| LockError::Io {
        path: path.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Busy {
                target: target_dir.to_owned(),
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.escape_debug().to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(
        file,
        "pid {}, since {}",
        std::process::id(),
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    )
    .map_err(io)?;
    Ok(TargetLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_gate_on_the_same_target_is_refused_until_the_first_ends() {
        let target = tempfile::tempdir().unwrap();
        let first = lock_target(target.path()).unwrap();
        let err = lock_target(target.path()).unwrap_err().to_string();
        assert!(
            err.contains("another gate is using")
                && err.contains(&format!("pid {}", std::process::id()))
                && err.contains("--target-dir"),
            "{err}"
        );
        // Another target directory is another lock.
        let other = tempfile::tempdir().unwrap();
        let _elsewhere = lock_target(other.path()).unwrap();
        drop(first);
        let again = lock_target(target.path()).unwrap();
        assert!(again.path.ends_with("gate/.lock"));
    }
}
