//! Shutdown signalling: a cloneable token that long-running loops watch, and the
//! SIGTERM/SIGINT future that binaries pass in.

use std::future::Future;

use tokio::sync::watch;

/// Cloneable; every clone sees the shutdown once any holder (or the trigger) fires.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// Fires the [`Shutdown`] it was created with. Dropping it completes [`Shutdown::fired`]
/// (no one is left to fire it) but leaves [`Shutdown::is_fired`] false.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    /// A token that has not fired, and the trigger that fires it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    /// A token that fires when `signal` completes.
    pub fn from_future(signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (trigger, shutdown) = Self::new();
        tokio::spawn(async move {
            signal.await;
            trigger.fire();
        });
        shutdown
    }

    /// Whether the trigger has fired, checked without waiting. A dropped trigger is not a
    /// fired one here (unlike for [`Shutdown::fired`]): loops that poll this keep running
    /// when their trigger's owner lets it go.
    pub fn is_fired(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once shutdown has been asked for.
    pub async fn fired(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the trigger was dropped, which counts as firing.
        let _ = receiver.wait_for(|fired| *fired).await;
    }

    /// Waits `delay`, or less if shutdown comes first; `true` when it did.
    pub async fn sleep(&self, delay: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => false,
            () = self.fired() => true,
        }
    }
}

impl ShutdownTrigger {
    /// Fires the token and every clone of it; firing again does nothing more.
    pub fn fire(&self) {
        self.sender.send_replace(true);
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), whichever comes first.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Received SIGINT, shutting down."),
        () = terminate => tracing::info!("Received SIGTERM, shutting down."),
    }
}
