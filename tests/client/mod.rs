//! A minimal HTTP/1.1 client for the server tests (`tests/server.rs`,
//! `tests/service.rs`): a connection whose reads and writes are bounded, and
//! one response read back. Each test writes its own requests.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Connects to `addr` with the connect and every read and write bounded by
/// `wait`, so that no test can hang on a server that stopped answering.
pub fn connect(addr: SocketAddr, wait: Duration) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, wait).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    stream.set_write_timeout(Some(wait)).expect("write timeout");
    stream
}

/// Reads one response (hyper sends a `content-length` with every one).
pub fn receive(reader: &mut BufReader<TcpStream>) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a content-length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    Reply {
        status,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}
