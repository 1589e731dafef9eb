//! The agent's REST API from the CLI: JSON requests, the agent's error
//! messages passed on as they are, and streamed uploads and downloads.

use std::io::{Read, Write};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use vireo_agent::types::ErrorBody;

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The node whose agent answers (`x-vireo-node`; the agent asked sends
    /// the request on): its tasks, its pools.
    node: Option<String>,
}

impl Client {
    /// `host` as `vireo node info --host` takes it.
    pub fn new(host: &str) -> Self {
        let base = crate::base_url(host);
        let config = crate::token::config_builder(&base)
            // Long operations are tasks: each request is short, except
            // uploads and downloads, which move data the whole time.
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build();
        Self {
            base,
            agent: ureq::Agent::new_with_config(config),
            node: None,
        }
    }

    /// The same client, its requests answered by node `node` (if given).
    pub fn on_node(self, node: Option<String>) -> Self {
        Self { node, ..self }
    }

    fn to_node<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.node {
            Some(node) => request.header("x-vireo-node", node),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// METHOD path [JSON body]; the answer's body on 2xx, else the agent's message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String, String> {
        let url = self.url(path);
        let json = body.map(Value::to_string);
        let sent = match (method, json) {
            ("GET", _) => self.to_node(self.agent.get(&url)).call(),
            ("DELETE", _) => self.to_node(self.agent.delete(&url)).call(),
            ("POST", j) => self
                .to_node(self.agent.post(&url))
                .header("content-type", "application/json")
                .send(j.unwrap_or_else(|| "{}".into())),
            ("PUT", j) => self
                .to_node(self.agent.put(&url))
                .header("content-type", "application/json")
                .send(j.unwrap_or_default()),
            (m, _) => return Err(format!("unsupported method {m}")),
        };
        let mut resp = sent.map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the answer from {url}: {e}"))?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(agent_error(&url, status.as_u16(), &text))
        }
    }

    /// `call`, its answer parsed.
    pub fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, String> {
        let text = self.call(method, path, body)?;
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the agent: {e}"))
    }

    /// PUT `path` with `len` bytes read from `input` as the body.
    pub fn upload(&self, path: &str, input: &mut dyn Read, len: u64) -> Result<String, String> {
        let url = self.url(path);
        let sent = self
            .agent
            .put(&url)
            .header("content-type", "application/octet-stream")
            .header("content-length", &len.to_string())
            .config()
            .timeout_recv_response(Some(Duration::from_secs(3600)))
            .build()
            .send(ureq::SendBody::from_reader(input));
        let mut resp = sent.map_err(|e| format!("uploading to {url}: {e}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(agent_error(&url, status.as_u16(), &text))
        }
    }

    /// GET `path` into `out`, streamed; `on_length` learns the size first.
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn Write,
        on_length: &dyn Fn(u64),
    ) -> Result<u64, String> {
        let url = self.url(path);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(agent_error(&url, status.as_u16(), &text));
        }
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        on_length(len);
        let mut body = resp.body_mut().as_reader();
        std::io::copy(&mut body, out).map_err(|e| format!("downloading {url}: {e}"))
    }
}

fn agent_error(url: &str, status: u16, body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => format!("{} ({})", e.error, e.status),
        Err(_) => format!("{url}: HTTP {status}"),
    }
}
