//! HTTPS to the central license manager: the network halves of registration and sync.
//!
//! TLS is verified against exactly one CA: the one registration pinned, or before that the
//! `[cloud] ca_file` of the configuration. Verification is never disabled. Bundles travel as
//! `application/zip` bodies, the same bytes as the files of the manual flow.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::error::{Error, Result};

/// Largest answer accepted from the cloud (a sync response for a million devices is far
/// below it); the bundle reader enforces its own limits on top.
const MAX_ANSWER: u64 = 512 * 1024 * 1024;

/// What the cloud answered to a bundle.
#[derive(Debug)]
pub enum Answer {
    /// A bundle (authorization, sync response).
    Bundle(Vec<u8>),
    /// Held for an operator's approval.
    Pending(String),
}

pub struct CloudClient {
    agent: Agent,
    base: String,
}

impl CloudClient {
    /// A client for `base_url` trusting only `ca_pem`, through `proxy` if not empty.
    pub fn new(base_url: &str, ca_pem: &[u8], proxy: &str) -> Result<CloudClient> {
        if !base_url.starts_with("https://") {
            return Err(Error::invalid(format!(
                "cloud URL {base_url:?} must start with https://"
            )));
        }
        let ca = Certificate::from_pem(ca_pem)
            .map_err(|e| Error::invalid(format!("the cloud CA is not a PEM certificate: {e}")))?;
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .build();
        let proxy = if proxy.is_empty() {
            None
        } else {
            Some(
                ureq::Proxy::new(proxy)
                    .map_err(|e| Error::invalid(format!("proxy {proxy:?}: {e}")))?,
            )
        };
        let config = Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .timeout_connect(Some(Duration::from_secs(15)))
            .build();
        Ok(CloudClient {
            agent: Agent::new_with_config(config),
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Posts a registration request bundle.
    pub fn register(&self, bundle: &[u8]) -> Result<Answer> {
        self.post("/api/v1/satellites/register", bundle)
    }

    /// Asks for the answer to a registration request the cloud held.
    pub fn poll_registration(&self, satellite_id: &str, request_id: &str) -> Result<Answer> {
        let url = format!(
            "{}/api/v1/satellites/{satellite_id}/registrations/{request_id}",
            self.base
        );
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport(&url, e))?;
        answer(&url, resp)
    }

    /// Posts a bundle to `path` and reads the answer.
    pub fn post(&self, path: &str, bundle: &[u8]) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("content-type", "application/zip")
            .send(bundle)
            .map_err(|e| transport(&url, e))?;
        answer(&url, resp)
    }
}

fn transport(url: &str, e: ureq::Error) -> Error {
    Error::Cloud(format!("cannot reach the cloud at {url}: {e}"))
}

fn answer(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Answer> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| Error::Cloud(format!("reading the cloud's answer from {url}: {e}")))?;
    let message = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect())
    };
    match status {
        200 => Ok(Answer::Bundle(body)),
        202 => Ok(Answer::Pending(message())),
        _ => Err(Error::Cloud(format!(
            "the cloud answered {status}: {}",
            message()
        ))),
    }
}
