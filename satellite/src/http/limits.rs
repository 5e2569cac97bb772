//! What keeps one client, authenticated or not, from exhausting the server: a cap on the
//! connections open from one client address (counted as connections open and close; beyond
//! the cap a connection's requests get 429 and it is closed), and a deadline for sending a
//! request's body (a client trickling it is cut off). The total cap on connections, the
//! deadline for a request's head and the TLS handshake's are set on the servers themselves
//! (`server.rs`); the body caps before authentication are the routes' (`http::operator`).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderValue, CONNECTION};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};

use crate::error::Error;

/// Connections open per client address.
#[derive(Debug)]
pub struct ClientConnections {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

impl ClientConnections {
    pub fn new(max: usize) -> Arc<ClientConnections> {
        Arc::new(ClientConnections {
            open: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// Counts a new connection from `ip`; the guard uncounts it when the connection closes.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> ConnGuard {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        *n += 1;
        ConnGuard {
            ip,
            over: *n > self.max,
            table: self.clone(),
        }
    }

    /// Connections open from `ip` now.
    #[cfg(test)]
    pub fn count(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

/// One open connection, in the connection's data for as long as it lives.
#[derive(Debug)]
pub struct ConnGuard {
    ip: IpAddr,
    /// The connection was one too many for its client.
    over: bool,
    table: Arc<ClientConnections>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The server's `on_connect`: counts the connection for its client address.
pub fn on_connect(
    table: Arc<ClientConnections>,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn: &dyn Any, data: &mut Extensions| {
        use actix_tls::accept::openssl::TlsStream;
        use actix_web::rt::net::TcpStream;
        let peer = if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() {
            tls.get_ref().peer_addr().ok()
        } else {
            conn.downcast_ref::<TcpStream>()
                .and_then(|t| t.peer_addr().ok())
        };
        if let Some(addr) = peer {
            data.insert(table.open(addr.ip()));
        }
    }
}

/// Refuses the requests of a connection beyond its client's cap (429, and the connection is
/// closed), and gives every request `body_timeout` to send its body.
pub async fn gate(
    body_timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let over = req
        .conn_data::<ConnGuard>()
        .filter(|g| g.over)
        .map(|g| g.ip);
    if let Some(ip) = over {
        let e = Error::TooManyRequests(format!(
            "too many connections from {ip}: at most [server] max_connections_per_client at \
             once"
        ));
        return Ok(req.into_response(closing(e)).map_into_right_body());
    }
    let payload = req.take_payload();
    let fired = Arc::new(AtomicBool::new(false));
    req.set_payload(Payload::Stream {
        payload: Box::pin(Deadline {
            inner: payload,
            sleep: Box::pin(tokio::time::sleep(body_timeout)),
            after: body_timeout,
            done: false,
            fired: fired.clone(),
        }),
    });
    let res = next.call(req).await?;
    if !fired.load(Ordering::Acquire) {
        return Ok(res.map_into_left_body());
    }
    // Whatever the handler made of the missing body, the answer is the deadline's.
    let e = Error::RequestTimeout(format!(
        "the request body was not sent within {} s ([server] body_timeout_seconds)",
        body_timeout.as_secs()
    ));
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, closing(e)).map_into_right_body())
}

/// The documented answer for `e`, and the connection closed after it.
fn closing(e: Error) -> actix_web::HttpResponse {
    let mut res = e.error_response();
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A request body that must arrive whole before its deadline.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    done: bool,
    /// Set when the deadline cut the body off.
    fired: Arc<AtomicBool>,
}

impl futures_core::Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    self.fired.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the request body was not sent within {} s",
                            self.after.as_secs()
                        ),
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_client_and_uncounted_when_they_close() {
        let t = ClientConnections::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = t.open(a);
        let g2 = t.open(a);
        let g3 = t.open(a);
        assert!(!g1.over && !g2.over && g3.over);
        assert!(!t.open(b).over, "another client has its own count");
        drop(g3);
        drop(g2);
        assert_eq!(t.count(a), 1);
        assert!(!t.open(a).over);
        drop(g1);
        assert_eq!(t.count(b), 0);
    }
}
