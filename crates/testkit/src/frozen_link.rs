//! A TCP relay on loopback between a client and the broker that can be frozen: it stops
//! passing bytes either way but keeps every socket open, as a partition or a hung node
//! would. Neither side notices until its own timeouts do. Dropping the link closes its
//! connections, as the broker does once heartbeats find them dead.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays connections to `target` until frozen; closes them all when dropped.
pub struct FreezableLink {
    address: SocketAddr,
    state: watch::Sender<State>,
    accepting: tokio::task::JoinHandle<()>,
}

impl FreezableLink {
    /// Listens on a free loopback port and relays each connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (state, watching) = watch::channel(State::Passing);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, watching.clone()));
            }
        });
        Self {
            address,
            state,
            accepting,
        }
    }

    /// Where clients connect instead of `target`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// From now on no byte passes, either way; the connections stay open.
    pub fn freeze(&self) {
        self.state.send_replace(State::Frozen);
    }
}

impl Drop for FreezableLink {
    fn drop(&mut self) {
        self.accepting.abort();
        self.state.send_replace(State::Closed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Passing,
    Frozen,
    Closed,
}

async fn relay(client: TcpStream, server: TcpStream, frozen: watch::Receiver<State>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pass(client_read, server_write, frozen.clone()),
        pass(server_read, client_write, frozen),
    );
}

/// Copies `from` to `to` until either closes; once frozen, holds both open and passes
/// nothing more, until the link is closed.
async fn pass(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut state: watch::Receiver<State>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = state.wait_for(|state| *state != State::Passing) => break,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                let passing = *state.borrow() == State::Passing;
                if !passing || to.write_all(&buffer[..count]).await.is_err() {
                    break;
                }
            }
        }
    }
    // Frozen: the sockets (`from` and `to`) stay open and answer nothing until closed.
    let _ = state.wait_for(|state| *state == State::Closed).await;
}
