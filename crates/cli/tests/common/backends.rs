//! HTTP servers on loopback ports that answer every request 200 with their name, for load-balancing tests; one can
//! be stopped (its listener and open connections closed) and started again on the same port.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Backend { name: name.to_owned(), addr, task: Some(serve(listener, name.to_owned())) }
    }

    /// One listening on `addr` (another loopback address, or a port chosen by the caller).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        Backend { name: name.to_owned(), addr, task: Some(serve(listener, name.to_owned())) }
    }

    /// `host:port`, as a target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Closes the listener and every connection: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        // The aborted task lets go of the socket when it is next polled; binding again may race it briefly.
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.task = Some(serve(listener, self.name.clone()));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: tokio::net::TcpListener, name: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Connections live in the set, so aborting this task closes them too.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { return };
                    let name = name.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                            let body = bytes::Bytes::from(name.clone());
                            async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(body))) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}
