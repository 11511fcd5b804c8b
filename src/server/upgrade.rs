//! The graceful upgrade's socket hand-over, made safe. On `SIGQUIT` Pingora connects to
//! `upgrade_sock` and sends every listening socket to whoever listens there, who then answers
//! the gateway's clients. So the socket lives in a directory only this user (or root) can
//! write, checked at start, and on `SIGQUIT` the listening socket must be owned by this
//! process's own user — the uid of the process that bound it — or the signal is refused and
//! the gateway keeps serving. (Pingora makes the connection itself, so the check is on the
//! socket file's owner rather than `SO_PEERCRED`; in a directory no other user can write, the
//! file cannot be swapped between the check and the connection.)

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// This process's effective user.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Where the sockets are handed over unless `server.upgrade_sock` says: systemd's
/// `RuntimeDirectory`, the user's runtime directory, or a private directory the gateway makes
/// in the temporary directory; never a shared directory itself.
pub(crate) fn default_socket() -> PathBuf {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let dir = match (var("RUNTIME_DIRECTORY"), var("XDG_RUNTIME_DIR")) {
        // systemd lists a unit's directories separated by colons: the first is its own.
        (Some(runtime), _) => PathBuf::from(runtime.split(':').next().unwrap_or_default()),
        (None, Some(user)) => Path::new(&user).join("modelmux"),
        (None, None) => std::env::temp_dir().join(format!("modelmux-{}", euid())),
    };
    dir.join("upgrade.sock")
}

/// The socket's directory, made (private) when missing, and checked: owned by this user or
/// root, writable by nobody else. An error says why the hand-over would not be safe.
pub(crate) fn prepare(socket: &Path) -> Result<(), String> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("{}: needs a directory", socket.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    }
    private_dir(dir)
}

fn private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != euid() && meta.uid() != 0 {
        return Err(format!(
            "{} belongs to another user (uid {}), who could receive the listening sockets",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by other users, who could listen there in the new process's place; choose a directory only this user can write (e.g. /run/modelmux)",
            dir.display()
        ));
    }
    Ok(())
}

/// Whether the sockets may be handed over now: a socket waits at `socket`, bound by a process
/// of this user, in a private directory.
pub(crate) fn receiver_is_ours(socket: &Path) -> Result<(), String> {
    private_dir(socket.parent().unwrap_or(Path::new("/")))?;
    let meta = std::fs::symlink_metadata(socket)
        .map_err(|e| format!("no new process waits on {}: {e}", socket.display()))?;
    if !meta.file_type().is_socket() {
        return Err(format!("{} is not a socket", socket.display()));
    }
    if meta.uid() != euid() {
        return Err(format!(
            "{} was bound by another user (uid {}), not this one (uid {})",
            socket.display(),
            meta.uid(),
            euid()
        ));
    }
    Ok(())
}

/// Pingora's signals (`SIGQUIT` upgrade, `SIGTERM` drain, `SIGINT` stop), with the upgrade
/// refused, and logged, unless the receiver is this user's.
pub(crate) struct Signals {
    pub(crate) socket: PathBuf,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot watch signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => match receiver_is_ours(&self.socket) {
                    Ok(()) => return ShutdownSignal::GracefulUpgrade,
                    Err(e) => log::error!("SIGQUIT refused, still serving: {e}"),
                },
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_private_directory_and_our_own_socket_will_do() {
        let base = std::env::temp_dir().join(format!("modelmux-upgrade-test-{}", std::process::id()));
        let socket = base.join("private").join("upgrade.sock");
        prepare(&socket).unwrap();
        let mode = std::fs::metadata(socket.parent().unwrap()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(receiver_is_ours(&socket).unwrap_err().contains("no new process waits"));
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        receiver_is_ours(&socket).unwrap();
        let shared = base.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(prepare(&shared.join("upgrade.sock")).unwrap_err().contains("writable by other users"));
        let _ = std::fs::remove_dir_all(&base);
    }
}
