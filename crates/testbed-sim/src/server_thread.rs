//! A server of the simulated world on a thread of its own, with its own tokio runtime: it outlives the
//! runtime of whoever started it (a test's, a CLI command's).

use std::future::Future;

/// Starts a thread named `name` whose runtime runs `bind` (which binds the server's sockets, inside the
/// runtime) and then the future it returns until that ends. Returns once `bind` has succeeded, or with its
/// error.
pub(crate) fn spawn<B, F>(name: &str, what: &'static str, bind: B) -> std::io::Result<()>
where
    B: FnOnce() -> std::io::Result<F> + Send + 'static,
    F: Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            match bind() {
                Ok(serve) => {
                    let _ = ready_tx.send(Ok(()));
                    serve.await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    })?;
    ready_rx.recv().map_err(|_| std::io::Error::other(format!("{what} did not start")))?
}
