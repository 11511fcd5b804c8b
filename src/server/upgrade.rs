//! The graceful upgrade's socket hand-over, made safe. Whoever listens on `upgrade_sock` when
//! the gateway gets `SIGQUIT` receives every listening socket and then answers the gateway's
//! clients. So the socket lives in a directory only this user (or root) can write, checked at
//! start, and the gateway makes the hand-over itself: it connects, reads the receiver's
//! credentials (`SO_PEERCRED`) and sends the sockets only to a process of its own user, in
//! Pingora's format. Anything else is refused, logged, and the gateway keeps serving.
//!
//! The new process (`serve --upgrade`) receives them itself too: it waits on the socket, as
//! long as the operator takes to send `SIGQUIT` (Pingora's own receiver gives up after five
//! seconds, logging an error each second), takes the sockets only from a process of its own
//! user, and hands them to Pingora's bootstrap over a second, private socket.

use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr,
};
use pingora::server::{Fds, ListenFds, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// Time for the access log's writer (a round every 50 ms) to write the last requests' lines
/// before the process exits.
const LAST_WRITES: Duration = Duration::from_millis(150);

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

/// A connection to the process waiting at `socket`, if it runs as this user (its pid too).
fn receiver(socket: &Path) -> Result<(UnixStream, i32), String> {
    private_dir(socket.parent().unwrap_or(Path::new("/")))?;
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("no new process waits on {}: {e}", socket.display()))?;
    let peer = getsockopt(&stream, sockopt::PeerCredentials)
        .map_err(|e| format!("cannot read the receiver's credentials: {e}"))?;
    if peer.uid() != euid() {
        return Err(format!(
            "the process on {} (pid {}) runs as uid {}, not this gateway's uid {}",
            socket.display(),
            peer.pid(),
            peer.uid(),
            euid()
        ));
    }
    Ok((stream, peer.pid()))
}

/// Sends the listening sockets in `fds` to the process waiting at `socket`, if it runs as
/// this user; the table is then emptied, so that Pingora does not send them again.
fn hand_over(socket: &Path, fds: &ListenFds) -> Result<(), String> {
    let (stream, pid) = receiver(socket)?;
    let mut table = fds.lock();
    let (binds, raw) = table.serialize();
    // Pingora's format: the addresses separated by spaces, their sockets in the same order.
    let payload = binds.join(" ");
    let rights = [ControlMessage::ScmRights(&raw)];
    sendmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &[IoSlice::new(payload.as_bytes())],
        &rights,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("sending the sockets failed: {e}"))?;
    // The sockets stay open here (Fds does not own them); only the table forgets them.
    *table = Fds::new();
    log::info!(
        "listening sockets ({}) handed to pid {pid}",
        binds.join(", ")
    );
    Ok(())
}

/// Listening sockets received from the running gateway: Pingora's payload (their addresses)
/// and the sockets, in the same order.
pub(crate) struct Received {
    payload: Vec<u8>,
    fds: Vec<std::os::fd::OwnedFd>,
}

/// How long `serve --upgrade` waits for the running gateway's sockets.
const RECEIVE_WAIT: Duration = Duration::from_secs(300);
/// The most sockets one hand-over carries (as Pingora's receiver).
const MAX_FDS: usize = 32;

/// Waits on `socket` for the running gateway's listening sockets, taking them only from a
/// process of this user.
pub(crate) fn receive(socket: &Path) -> Result<Received, String> {
    use std::os::fd::FromRawFd;
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    log::info!(
        "waiting on {} for the running gateway's sockets: send it SIGQUIT",
        socket.display()
    );
    let deadline = std::time::Instant::now() + RECEIVE_WAIT;
    let received = loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    break Err(format!(
                        "no gateway sent its sockets within {} s",
                        RECEIVE_WAIT.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => break Err(format!("accepting on {}: {e}", socket.display())),
        };
        let sender = getsockopt(&stream, sockopt::PeerCredentials);
        match sender {
            Ok(c) if c.uid() == euid() => {}
            Ok(c) => {
                log::error!(
                    "refused sockets from pid {} (uid {}, not this gateway's {})",
                    c.pid(),
                    c.uid(),
                    euid()
                );
                continue;
            }
            Err(e) => {
                log::error!("cannot read the sender's credentials: {e}");
                continue;
            }
        }
        let _ = stream.set_nonblocking(false);
        let mut payload = vec![0u8; 2048];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
        let mut iov = [std::io::IoSliceMut::new(&mut payload)];
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving the sockets failed: {e}"))?;
        let bytes = msg.bytes;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: descriptors just received with SCM_RIGHTS belong to this process.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        payload.truncate(bytes);
        break Ok(Received { payload, fds });
    };
    let _ = std::fs::remove_file(socket);
    received
}

/// Hands received sockets on to Pingora's bootstrap, which listens on `internal` (this
/// process's own, private) and fills its table from them. Runs beside the bootstrap; the
/// copies here are closed once sent.
pub(crate) fn forward(received: Received, internal: &Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(internal) {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(format!("{}: {e}", internal.display())),
        }
    };
    let raw: Vec<std::os::fd::RawFd> = received.fds.iter().map(|f| f.as_raw_fd()).collect();
    sendmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &[IoSlice::new(&received.payload)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("handing the sockets to the bootstrap failed: {e}"))?;
    Ok(())
}

/// Pingora's signals (`SIGQUIT` upgrade, `SIGTERM` drain, `SIGINT` stop), the upgrade's
/// hand-over made here, to this user's processes only, and both graceful ones drained here
/// (`drain`): Pingora then has nothing left to wait for.
pub(crate) struct Signals {
    pub(crate) socket: PathBuf,
    /// How long requests in flight get to finish.
    pub(crate) grace: Duration,
    /// The server's table of listening sockets, once the gateway's listeners have started.
    pub(crate) fds: Arc<OnceLock<ListenFds>>,
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
                _ = quit.recv() => {
                    let Some(fds) = self.fds.get() else {
                        log::error!("SIGQUIT refused, still serving: the listeners have not started");
                        continue;
                    };
                    match hand_over(&self.socket, fds) {
                        Ok(()) => {
                            // The new process accepts from now on; this one drains and exits.
                            crate::drain::drain(self.grace).await;
                            tokio::time::sleep(LAST_WRITES).await;
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(e) => log::error!("SIGQUIT refused, still serving: {e}"),
                    }
                }
                _ = term.recv() => {
                    log::info!("SIGTERM: no new requests; draining");
                    crate::drain::drain(self.grace).await;
                    tokio::time::sleep(LAST_WRITES).await;
                    return ShutdownSignal::GracefulTerminate;
                }
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
    fn only_a_private_directory_will_do() {
        let base =
            std::env::temp_dir().join(format!("modelmux-upgrade-test-{}", std::process::id()));
        let socket = base.join("private").join("upgrade.sock");
        prepare(&socket).unwrap();
        let mode = std::fs::metadata(socket.parent().unwrap()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(receiver(&socket)
            .unwrap_err()
            .contains("no new process waits"));
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let (_, pid) = receiver(&socket).expect("a receiver of this user");
        assert_eq!(pid, std::process::id() as i32);
        let shared = base.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = prepare(&shared.join("upgrade.sock")).unwrap_err();
        assert!(err.contains("writable by other users"));
        let _ = std::fs::remove_dir_all(&base);
    }
}
