//! The server end to end: a real socket, raw HTTP from a client, and a fake
//! event loop answering on the channel.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::TryRecvError;
use std::thread;

use serde_json::{json, Value};

use super::*;
use crate::api::{VmInfo, VmState};
use crate::config::{MemorySize, SerialOutput, VmConfig};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh path under the temp dir, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("vireo-api-{}-{n}.sock", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// What the fake event loop answers; `None` means it never answers.
type Answer = Box<dyn Fn(ApiRequest) -> Option<ApiResponse> + Send>;

/// Stands in for the VMM's event loop: sleeps until the eventfd is written,
/// then answers every queued request, as the real loop does from epoll. So a
/// server that forgot to wake it gets no answers. Returns what it was asked
/// once the server has gone and it is woken one last time.
fn fake_event_loop(receiver: ApiReceiver, answer: Answer) -> JoinHandle<Vec<ApiRequest>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        // Kept so that an unanswered request times out rather than failing.
        let mut unanswered = Vec::new();
        loop {
            http::poll_in(&[receiver.wake.as_raw_fd()], None).unwrap();
            receiver.wake.read().unwrap();
            loop {
                match receiver.requests.try_recv() {
                    Ok((request, reply)) => {
                        seen.push(request.clone());
                        match answer(request) {
                            // A server that gave up waiting has dropped its end; the real
                            // loop must shrug that off too.
                            Some(response) => drop(reply.send(response)),
                            None => unanswered.push(reply),
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return seen,
                }
            }
        }
    })
}

/// A server on a temp socket with a fake event loop behind it.
struct Fixture {
    handle: Option<ApiServerHandle>,
    wake: EventFd,
    event_loop: Option<JoinHandle<Vec<ApiRequest>>>,
    path: TempPath,
}

impl Fixture {
    fn new(answer: impl Fn(ApiRequest) -> Option<ApiResponse> + Send + 'static) -> Self {
        Self::at(TempPath::new(), DEFAULT_REPLY_TIMEOUT, answer)
    }

    fn at(
        path: TempPath,
        timeout: Duration,
        answer: impl Fn(ApiRequest) -> Option<ApiResponse> + Send + 'static,
    ) -> Self {
        let (sender, receiver) = api_channel().unwrap();
        let wake = receiver.wake.try_clone().unwrap();
        let event_loop = fake_event_loop(receiver, Box::new(answer));
        let server = ApiServer::new(&path.0, sender).reply_timeout(timeout);
        Fixture {
            handle: Some(server.start().unwrap()),
            wake,
            event_loop: Some(event_loop),
            path,
        }
    }

    fn request(&self, method: &str, target: &str) -> Response {
        let head = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        exchange(&self.path.0, head.as_bytes())
    }

    fn send(&self, raw: &[u8]) -> Response {
        exchange(&self.path.0, raw)
    }

    /// Stops the server and returns what the event loop was asked.
    fn finish(mut self) -> Vec<ApiRequest> {
        self.stop()
    }

    fn stop(&mut self) -> Vec<ApiRequest> {
        drop(self.handle.take());
        // The server's end of the channel is gone; one last wake-up lets the
        // fake loop notice.
        self.wake.write(1).unwrap();
        let event_loop = self.event_loop.take();
        // A panic on the loop thread has been printed; the requests it saw are lost.
        event_loop.map_or_else(Vec::new, |t| t.join().unwrap_or_default())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n == name);
        found.next().map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        let length = self.body.len().to_string();
        assert_eq!(self.header("content-length"), Some(length.as_str()));
        serde_json::from_str(&self.body).unwrap()
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_string()
    }
}

/// Sends `raw` and reads the response up to the server closing.
fn exchange(path: &Path, raw: &[u8]) -> Response {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.write_all(raw).unwrap();
    read_response(stream)
}

fn read_response(mut stream: UnixStream) -> Response {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // The server closed with our unread body in its buffer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    parse_response(&String::from_utf8(raw).unwrap())
}

fn parse_response(text: &str) -> Response {
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let headers = lines
        .map(|l| l.split_once(": ").unwrap())
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    Response {
        status: status_line[9..12].parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

fn sample_info() -> VmInfo {
    let config = VmConfig {
        kernel: "/boot/vmlinux".into(),
        initrd: None,
        cmdline: "console=ttyS0".into(),
        vcpus: 2,
        memory: MemorySize(512 << 20),
        serial: SerialOutput::File("/var/log/vireo/console.log".into()),
        api_socket: Some("/run/vireo/vm0.sock".into()),
        disks: Vec::new(),
        nets: Vec::new(),
    };
    VmInfo {
        config,
        state: VmState::Running,
        vcpus: 2,
        memory_bytes: 512 << 20,
        console: Default::default(),
        devices: None,
    }
}

/// Answers GET /vm with [`sample_info`] and every action with Done.
fn happy(request: ApiRequest) -> Option<ApiResponse> {
    Some(match request {
        ApiRequest::GetVmInfo => ApiResponse::VmInfo(Box::new(sample_info())),
        _ => ApiResponse::Done,
    })
}

#[test]
fn get_vm_returns_the_vm_info() {
    let f = Fixture::new(happy);
    let response = f.request("GET", "/vm");
    assert_eq!(response.status, 200);
    let info = response.json();
    assert_eq!(info["state"], "running");
    assert_eq!(info["vcpus"], 2);
    assert_eq!(info["memory_bytes"], 512u64 << 20);
    let config = &info["config"];
    assert_eq!(config["kernel"], "/boot/vmlinux");
    assert_eq!(config["initrd"], Value::Null);
    assert_eq!(config["cmdline"], "console=ttyS0");
    assert_eq!(config["memory"], 512u64 << 20);
    let serial = json!({"kind": "file", "path": "/var/log/vireo/console.log"});
    assert_eq!(config["serial"], serial);
    assert_eq!(config["api_socket"], "/run/vireo/vm0.sock");
    assert_eq!(f.finish(), [ApiRequest::GetVmInfo]);
}

#[test]
fn head_vm_sends_the_headers_only() {
    let f = Fixture::new(happy);
    let response = f.request("HEAD", "/vm");
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    let length: usize = response.header("content-length").unwrap().parse().unwrap();
    assert!(length > 0);
}

#[test]
fn actions_return_204_and_reach_the_event_loop() {
    let f = Fixture::new(happy);
    for action in ["pause", "resume", "shutdown", "reboot"] {
        let response = f.request("PUT", &format!("/vm/{action}"));
        assert_eq!(response.status, 204, "{action}");
        assert!(response.body.is_empty());
        assert_eq!(response.header("content-length"), None);
    }
    use ApiRequest::*;
    assert_eq!(f.finish(), [Pause, Resume, Shutdown, Reboot]);
}

#[test]
fn conflicts_and_failures_carry_the_event_loops_message() {
    let f = Fixture::new(|request| match request {
        ApiRequest::Resume => Some(ApiResponse::Conflict("the VM is running".into())),
        _ => Some(ApiResponse::Failed("KVM_RUN failed".into())),
    });
    let conflict = f.request("PUT", "/vm/resume");
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.error(), "the VM is running");
    let failed = f.request("PUT", "/vm/reboot");
    assert_eq!(failed.status, 500);
    assert_eq!(failed.error(), "KVM_RUN failed");
}

#[test]
fn unknown_paths_get_404() {
    let f = Fixture::new(happy);
    let response = f.request("GET", "/vms/0?verbose=1");
    assert_eq!(response.status, 404);
    assert_eq!(response.error(), "no such resource: /vms/0");
    assert_eq!(f.request("PUT", "/vm/pause/now").status, 404);
    assert!(f.finish().is_empty());
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let f = Fixture::new(happy);
    let response = f.request("POST", "/vm/pause");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("PUT"));
    assert!(response.error().contains("POST"));
    let response = f.request("DELETE", "/vm");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    assert!(f.finish().is_empty());
}

#[test]
fn trailing_slashes_and_queries_are_ignored() {
    let f = Fixture::new(happy);
    assert_eq!(f.request("GET", "/vm/?pretty=1").status, 200);
    assert_eq!(f.request("PUT", "/vm/pause/").status, 204);
    assert_eq!(f.request("PUT", "http://localhost/vm/resume").status, 204);
}

#[test]
fn small_bodies_are_ignored() {
    let f = Fixture::new(happy);
    let raw = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(f.send(raw).status, 204);
    let mut raw = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 65536\r\n\r\n".to_vec();
    raw.resize(raw.len() + 65536, b' ');
    assert_eq!(f.send(&raw).status, 204);
    let chunked = b"PUT /vm/resume HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n";
    assert_eq!(f.send(chunked).status, 204);
    use ApiRequest::*;
    assert_eq!(f.finish(), [Pause, Pause, Resume]);
}

#[test]
fn oversize_bodies_get_413_without_being_read() {
    let f = Fixture::new(happy);
    // Declared but never sent: a server that tried to read it would hang.
    let huge = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 1099511627776000\r\n\r\n";
    let response = f.send(huge);
    assert_eq!(response.status, 413);
    assert_eq!(response.error(), "the request body is larger than 64 KiB");
    let over = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
    assert_eq!(f.send(over).status, 413);
    let expect =
        b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n";
    assert_eq!(f.send(expect).status, 413);
    let chunk = b"PUT /vm/pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n";
    assert_eq!(f.send(chunk).status, 413);
    assert_eq!(streamed_oversize_body(&f.path.0).status, 413);
    // Still serving, and nothing was forwarded.
    assert_eq!(f.request("GET", "/vm").status, 200);
    assert_eq!(f.finish(), [ApiRequest::GetVmInfo]);
}

#[test]
fn expect_continue_gets_the_go_ahead_for_a_body() {
    let f = Fixture::new(happy);
    let mut stream = UnixStream::connect(&f.path.0).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let head = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    stream.write_all(head).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"{}").unwrap();
    assert_eq!(read_response(stream).status, 204);
    assert_eq!(f.finish(), [ApiRequest::Pause]);
}

/// A client that sends 1 MiB of body as fast as it can.
fn streamed_oversize_body(path: &Path) -> Response {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let head = b"PUT /vm/pause HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
    stream.write_all(head).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let body = thread::spawn(move || {
        // Fails with EPIPE once the server has answered and closed.
        let _ = writer.write_all(&vec![b'x'; 1 << 20]);
    });
    let response = read_response(stream);
    body.join().unwrap();
    response
}

#[test]
fn malformed_requests_get_4xx_and_the_server_carries_on() {
    let f = Fixture::new(happy);
    assert_eq!(f.send(b"garbage\r\n\r\n").status, 400);
    assert_eq!(f.send(b"GET /vm HTTP/2.0\r\n\r\n").status, 505);
    let mut big = b"GET /vm HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(big.len() + 9000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(f.send(&big).status, 431);
    // A client that connects and leaves without a word.
    drop(UnixStream::connect(&f.path.0).unwrap());
    assert_eq!(f.request("GET", "/vm").status, 200);
    assert_eq!(f.finish(), [ApiRequest::GetVmInfo]);
}

#[test]
fn silent_event_loop_gets_503_after_the_timeout() {
    let timeout = Duration::from_millis(200);
    let f = Fixture::at(TempPath::new(), timeout, |_| None);
    let start = Instant::now();
    let response = f.request("PUT", "/vm/pause");
    let elapsed = start.elapsed();
    assert_eq!(response.status, 503);
    assert_eq!(response.error(), "the VMM did not answer in time");
    assert!(
        elapsed >= timeout && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[test]
fn closed_channel_gets_503() {
    let path = TempPath::new();
    let (sender, receiver) = api_channel().unwrap();
    drop(receiver);
    let _handle = start(&path.0, sender).unwrap();
    let response = exchange(&path.0, b"PUT /vm/pause HTTP/1.1\r\n\r\n");
    assert_eq!(response.status, 503);
    assert_eq!(response.error(), "the VMM is shutting down");
}

#[test]
fn stopping_answers_a_waiting_request_at_once() {
    let (seen_tx, seen_rx) = mpsc::channel();
    let mut f = Fixture::at(TempPath::new(), Duration::from_secs(30), move |r| {
        seen_tx.send(r).unwrap();
        None
    });
    let path = f.path.0.clone();
    let client = thread::spawn(move || exchange(&path, b"PUT /vm/pause HTTP/1.1\r\n\r\n"));
    seen_rx.recv_timeout(CLIENT_TIMEOUT).unwrap();
    let start = Instant::now();
    assert_eq!(f.stop(), [ApiRequest::Pause]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let response = client.join().unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.error(), "the VMM is shutting down");
}

#[test]
fn stale_socket_is_replaced() {
    let path = TempPath::new();
    // A listener closed without unlinking, as after a crash.
    drop(UnixListener::bind(&path.0).unwrap());
    assert!(fs::symlink_metadata(&path.0)
        .unwrap()
        .file_type()
        .is_socket());
    let f = Fixture::at(path, DEFAULT_REPLY_TIMEOUT, happy);
    assert_eq!(f.request("GET", "/vm").status, 200);
}

#[test]
fn live_socket_is_not_stolen() {
    let f = Fixture::new(happy);
    let before = file_identity(&f.path.0);
    let (sender, _receiver) = api_channel().unwrap();
    let err = start(&f.path.0, sender).err().expect("must not start");
    assert!(matches!(err, ApiError::InUse(_)), "{err}");
    assert_eq!(file_identity(&f.path.0), before);
    assert_eq!(f.request("GET", "/vm").status, 200);
}

#[test]
fn non_sockets_are_refused_and_left_intact() {
    let path = TempPath::new();
    fs::write(&path.0, "precious").unwrap();
    let (sender, _receiver) = api_channel().unwrap();
    let err = start(&path.0, sender).err().expect("must not start");
    assert!(matches!(err, ApiError::NotASocket(_)), "{err}");
    assert_eq!(fs::read_to_string(&path.0).unwrap(), "precious");

    // Nor does it follow a symlink, even to a stale socket.
    let target = TempPath::new();
    drop(UnixListener::bind(&target.0).unwrap());
    let link = TempPath::new();
    std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
    let (sender, _receiver) = api_channel().unwrap();
    let err = start(&link.0, sender).err().expect("must not start");
    assert!(matches!(err, ApiError::NotASocket(_)), "{err}");
    assert!(fs::symlink_metadata(&link.0).unwrap().is_symlink());
}

#[test]
fn socket_is_private_and_removed_on_drop() {
    let path = TempPath::new();
    let (sender, _receiver) = api_channel().unwrap();
    let handle = start(&path.0, sender).unwrap();
    assert_eq!(handle.path(), path.0);
    let meta = fs::symlink_metadata(&path.0).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(server_thread_exists());
    handle.stop();
    assert!(fs::symlink_metadata(&path.0).is_err());
}

#[test]
fn a_replaced_socket_is_not_removed() {
    let path = TempPath::new();
    let (sender, _receiver) = api_channel().unwrap();
    let handle = start(&path.0, sender).unwrap();
    fs::remove_file(&path.0).unwrap();
    let _other = UnixListener::bind(&path.0).unwrap();
    drop(handle);
    assert!(fs::symlink_metadata(&path.0).is_ok());
}

/// Whether some thread of this process is called "vireo-api".
fn server_thread_exists() -> bool {
    let tasks = fs::read_dir("/proc/self/task").unwrap();
    tasks.filter_map(Result::ok).any(|task| {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        comm.trim_end() == "vireo-api"
    })
}

/// The wire form docs/api/openapi.yaml describes for a serial without a path.
#[test]
fn serial_without_a_path_serializes_as_its_kind_alone() {
    let mut info = sample_info();
    info.config.serial = SerialOutput::Stdio;
    info.state = VmState::ShuttingDown;
    let value = serde_json::to_value(&info).unwrap();
    assert_eq!(value["config"]["serial"], json!({"kind": "stdio"}));
    assert_eq!(value["state"], "shutting_down");
}
