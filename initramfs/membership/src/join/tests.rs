use std::net::TcpListener;
use std::sync::Mutex;

use super::*;

struct Fake {
    token: Token,
    added: Mutex<Vec<String>>,
}

impl Admit for Fake {
    fn cluster(&self) -> String {
        "lab".into()
    }
    fn token(&self) -> Result<Token, String> {
        Ok(self.token.clone())
    }
    fn add(&self, name: &str, addr: Ipv4Addr) -> Result<(u32, String), String> {
        if name == "taken" {
            return Err(format!("address {addr} is already node 1 (a)"));
        }
        self.added.lock().unwrap().push(name.into());
        Ok((7, format!("conf for {name}")))
    }
    fn issue(&self, name: &str, _: Ipv4Addr, key: &[u8]) -> Result<Option<Certs>, String> {
        if key.is_empty() {
            return Err("empty key".into());
        }
        Ok(Some(Certs {
            cert: format!("cert of {name} for {}", hex(key)),
            ca: "ca".into(),
        }))
    }
}

/// One server thread answering `n` connections.
fn server(
    token: Token,
    n: usize,
) -> (
    SocketAddr,
    std::thread::JoinHandle<Vec<Result<String, String>>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let fake = Fake {
            token,
            added: Mutex::new(Vec::new()),
        };
        (0..n)
            .map(|_| serve(l.accept().unwrap().0, &fake))
            .collect()
    });
    (at, h)
}

#[test]
fn the_right_token_joins_and_a_wrong_one_does_not() {
    let t = Token::generate().unwrap();
    let (at, h) = server(t.clone(), 3);
    let addr = Ipv4Addr::new(10, 0, 0, 9);
    let ok = request(at, &t, "n9", addr, None).unwrap();
    assert_eq!(
        (ok.nodeid, ok.conf.as_str(), ok.cluster.as_str()),
        (7, "conf for n9", "lab")
    );
    let wrong = Token::generate().unwrap();
    let e = request(at, &wrong, "n9", addr, None).unwrap_err();
    assert!(e.contains("wrong join token"), "{e}");
    let e = request(at, &t, "taken", addr, None).unwrap_err();
    assert!(e.contains("already node 1"), "{e}");
    let log = h.join().unwrap();
    assert!(
        log[0].is_ok() && log[1].is_err() && log[2].is_err(),
        "{log:?}"
    );
}

#[test]
fn a_joiner_key_comes_back_signed_under_the_mac() {
    let t = Token::generate().unwrap();
    let (at, h) = server(t.clone(), 3);
    let addr = Ipv4Addr::new(10, 0, 0, 9);
    let ok = request(at, &t, "n9", addr, Some(&[0xab, 0xcd])).unwrap();
    let issued = ok.issued.unwrap();
    assert_eq!(
        (issued.cert.as_str(), issued.ca.as_str()),
        ("cert of n9 for abcd", "ca")
    );
    assert_eq!(request(at, &t, "n9", addr, None).unwrap().issued, None);
    // A key the member cannot sign refuses the join before it is added.
    let e = request(at, &t, "n8", addr, Some(&[])).unwrap_err();
    assert!(e.contains("node certificate: empty key"), "{e}");
    let log = h.join().unwrap();
    assert!(log[2].is_err(), "{log:?}");
}

#[test]
fn a_malformed_request_is_refused_with_a_reason() {
    let t = Token::generate().unwrap();
    let (at, h) = server(t, 1);
    let mut s = TcpStream::connect(at).unwrap();
    s.write_all(b"{\"t\":\"hello\",\"version\":1}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    assert!(
        answer.contains("refused") && answer.contains("malformed"),
        "{answer}"
    );
    assert!(h.join().unwrap()[0].is_err());
}

#[test]
fn a_server_without_the_token_is_not_believed() {
    // The impostor knows another token: its accepted MAC cannot match.
    let (at, h) = server(Token::generate().unwrap(), 1);
    let mine = Token::generate().unwrap();
    let e = request(at, &mine, "n9", Ipv4Addr::new(10, 0, 0, 9), None).unwrap_err();
    // It refuses our MAC first; either way nothing is accepted.
    assert!(
        e.contains("wrong join token") || e.contains("without proof"),
        "{e}"
    );
    let _ = h.join();
}

#[test]
fn tokens_parse_strictly() {
    let t = Token::generate().unwrap();
    assert_eq!(Token::parse(&format!(" {}\n", t.to_text())).unwrap(), t);
    assert!(Token::parse("abc").unwrap_err().contains("start with"));
    assert!(Token::parse("vireo1-12zz")
        .unwrap_err()
        .contains("hex digits"));
    assert_eq!(format!("{t:?}"), "Token(..)");
}
