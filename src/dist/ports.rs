//! The rendezvous port of a job (`MASTER_PORT`).
//!
//! Users expect PyTorch's 29500. When that is taken (another job on this
//! machine), a single-node job binds a free port instead and says so, so two
//! jobs never collide. The socket stays bound: rank 0's TCPStore takes it over
//! (`DETC_MASTER_LISTEN_FD`), so nothing can grab the port between this check
//! and its use.

use std::io::ErrorKind;
use std::net::TcpListener;

/// PyTorch's default `MASTER_PORT`.
pub const DEFAULT_PORT: u16 = 29500;

/// A bound rendezvous socket.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub port: u16,
    /// Printed by the launcher when the requested port was replaced.
    pub note: Option<String>,
}

/// What may happen when the asked-for port is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRule {
    /// The default port of a single-node job: bind a free one instead.
    Fallback,
    /// The user chose it with `--port`: an error.
    Explicit,
    /// The other nodes of the job expect it: an error.
    Shared,
}

/// Why the rendezvous port could not be bound.
#[derive(Debug)]
pub enum PortError {
    /// `port` is taken and may not be replaced ([`PortRule::Explicit`] or [`PortRule::Shared`]).
    InUse {
        addr: String,
        port: u16,
        rule: PortRule,
    },
    /// Any other bind failure (e.g. `addr` is not an address of this machine).
    Bind {
        addr: String,
        port: u16,
        error: std::io::Error,
    },
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortError::InUse {
                addr,
                port,
                rule: PortRule::Explicit | PortRule::Fallback,
            } => write!(
                f,
                "port {port} on {addr} is in use (another job?): pass a free port with `--port`, \
                 or leave `--port` out to let detc pick one"
            ),
            PortError::InUse {
                addr,
                port,
                rule: PortRule::Shared,
            } => write!(
                f,
                "port {port} on {addr} is in use (another job?), and the other nodes expect it: \
                 pass a free port with `--port` on every node"
            ),
            PortError::Bind { addr, port, error } => write!(
                f,
                "cannot listen on {addr}:{port}: {error}; on node rank 0, `--master-addr` must be \
                 an address of this machine"
            ),
        }
    }
}

impl std::error::Error for PortError {}

/// Binds `addr:port`. With [`PortRule::Fallback`], a port in use is replaced
/// by a free one (port 0) and [`Bound::note`] says so; otherwise it is an error.
pub fn bind_master(addr: &str, port: u16, rule: PortRule) -> Result<Bound, PortError> {
    match TcpListener::bind((addr, port)) {
        Ok(listener) => Ok(Bound {
            listener,
            port,
            note: None,
        }),
        Err(e) if e.kind() == ErrorKind::AddrInUse && rule == PortRule::Fallback => {
            let listener = TcpListener::bind((addr, 0)).map_err(|error| PortError::Bind {
                addr: addr.into(),
                port: 0,
                error,
            })?;
            let free = listener
                .local_addr()
                .map_err(|error| PortError::Bind {
                    addr: addr.into(),
                    port: 0,
                    error,
                })?
                .port();
            let note = format!("note: port {port} is in use; using free port {free}");
            Ok(Bound {
                listener,
                port: free,
                note: Some(note),
            })
        }
        Err(e) if e.kind() == ErrorKind::AddrInUse => Err(PortError::InUse {
            addr: addr.into(),
            port,
            rule,
        }),
        Err(error) => Err(PortError::Bind {
            addr: addr.into(),
            port,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that something else (this test) is listening on.
    fn occupied() -> (TcpListener, u16) {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[test]
    fn a_free_port_is_bound_as_asked() {
        let (l, port) = occupied();
        drop(l);
        let bound = bind_master("127.0.0.1", port, PortRule::Fallback).unwrap();
        assert_eq!(bound.port, port);
        assert!(bound.note.is_none());
        assert_eq!(bound.listener.local_addr().unwrap().port(), port);
    }

    #[test]
    fn a_default_port_in_use_falls_back_to_a_free_one() {
        let (_held, port) = occupied();
        let bound = bind_master("127.0.0.1", port, PortRule::Fallback).unwrap();
        assert_ne!(bound.port, port);
        assert_ne!(bound.port, 0);
        assert_eq!(bound.listener.local_addr().unwrap().port(), bound.port);
        assert_eq!(
            bound.note.unwrap(),
            format!(
                "note: port {port} is in use; using free port {}",
                bound.port
            )
        );
    }

    #[test]
    fn an_explicit_port_in_use_is_an_error_naming_it() {
        let (_held, port) = occupied();
        let err = bind_master("127.0.0.1", port, PortRule::Explicit).unwrap_err();
        assert!(
            matches!(err, PortError::InUse { port: p, rule: PortRule::Explicit, .. } if p == port)
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("port {port} on 127.0.0.1 is in use")),
            "{text}"
        );
        assert!(text.contains("leave `--port` out"), "{text}");
        let err = bind_master("127.0.0.1", port, PortRule::Shared).unwrap_err();
        assert!(err.to_string().contains("on every node"), "{err}");
    }

    #[test]
    fn an_address_of_another_machine_is_a_bind_error() {
        // TEST-NET-1 (RFC 5737) is never an address of this machine.
        let err = bind_master("192.0.2.1", 0, PortRule::Fallback).unwrap_err();
        assert!(matches!(err, PortError::Bind { .. }), "{err}");
    }
}
