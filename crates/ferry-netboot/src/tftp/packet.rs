//! TFTP packets (RFC 1350 §5) and the option extension (RFC 2347).
//!
//! Hand-written: the format is five opcodes of a few fields each, and the
//! maintained Rust TFTP crates bring their own async runtime (async-io,
//! async-executor) or a second thiserror major version into a tokio
//! binary. Parsing never panics and never allocates more than the packet.

/// A parsed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request: file name, mode, options (names lower-cased).
    Read {
        filename: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    Write {
        filename: String,
    },
    Data {
        block: u16,
        len: usize,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: String,
    },
    OptionAck {
        options: Vec<(String, String)>,
    },
}

/// RFC 1350 error codes (and RFC 2347's 8).
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet shorter than its opcode")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet, ParseError> {
    if buf.len() < 2 {
        return Err(ParseError::Short);
    }
    let opcode = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    match opcode {
        RRQ | WRQ => {
            let mut fields = strings(body).ok_or(ParseError::Malformed("request"))?;
            if fields.len() < 2 || fields.len() % 2 != 0 {
                return Err(ParseError::Malformed("request"));
            }
            let options = fields
                .split_off(2)
                .chunks(2)
                .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
                .collect();
            let mode = fields.pop().unwrap_or_default().to_ascii_lowercase();
            let filename = fields.pop().unwrap_or_default();
            if opcode == RRQ {
                Ok(Packet::Read {
                    filename,
                    mode,
                    options,
                })
            } else {
                Ok(Packet::Write { filename })
            }
        }
        DATA => {
            let block = u16_at(body).ok_or(ParseError::Malformed("DATA"))?;
            Ok(Packet::Data {
                block,
                len: body.len() - 2,
            })
        }
        ACK => {
            let block = u16_at(body).ok_or(ParseError::Malformed("ACK"))?;
            Ok(Packet::Ack { block })
        }
        ERROR => {
            let code = u16_at(body).ok_or(ParseError::Malformed("ERROR"))?;
            let message = strings(&body[2..])
                .and_then(|mut s| s.drain(..).next())
                .unwrap_or_default();
            Ok(Packet::Error { code, message })
        }
        OACK => {
            let fields = strings(body).ok_or(ParseError::Malformed("OACK"))?;
            if fields.len() % 2 != 0 {
                return Err(ParseError::Malformed("OACK"));
            }
            Ok(Packet::OptionAck {
                options: fields
                    .chunks(2)
                    .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
                    .collect(),
            })
        }
        other => Err(ParseError::Opcode(other)),
    }
}

fn u16_at(body: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*body.first()?, *body.get(1)?]))
}

/// NUL-terminated strings filling `body` exactly (the last must be
/// terminated too). Non-UTF-8 bytes are refused.
fn strings(body: &[u8]) -> Option<Vec<String>> {
    if body.is_empty() || *body.last()? != 0 {
        return None;
    }
    body[..body.len() - 1]
        .split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).ok().map(str::to_string))
        .collect()
}

/// Writes a DATA header into `out` (the caller appends the data).
pub fn data_header(block: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

pub fn option_ack(options: &[(String, String)]) -> Vec<u8> {
    let mut out = OACK.to_be_bytes().to_vec();
    for (k, v) in options {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes a request (used by tests and the fuzz target's round trip).
pub fn read_request(filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = RRQ.to_be_bytes().to_vec();
    for s in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

pub fn ack(block: u16) -> Vec<u8> {
    let mut out = ACK.to_be_bytes().to_vec();
    out.extend_from_slice(&block.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_with_options() {
        let raw = read_request(
            "undionly.kpxe",
            "OCTET",
            &[("BlkSize", "1468"), ("tsize", "0")],
        );
        assert_eq!(
            parse(&raw).unwrap(),
            Packet::Read {
                filename: "undionly.kpxe".into(),
                mode: "octet".into(),
                options: vec![
                    ("blksize".into(), "1468".into()),
                    ("tsize".into(), "0".into())
                ],
            }
        );
    }

    #[test]
    fn refuses_malformed() {
        for raw in [
            &b""[..],
            b"\x00",
            b"\x00\x01file",
            b"\x00\x01file\x00",
            b"\x00\x01file\x00octet\x00blksize\x00",
            b"\x00\x04\x00",
            b"\x00\x09\x00\x00",
            b"\x00\x01\xff\xfe\x00octet\x00",
        ] {
            assert!(parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(
            parse(b"\x00\x04\x00\x07").unwrap(),
            Packet::Ack { block: 7 }
        );
        assert_eq!(
            parse(b"\x00\x05\x00\x08").unwrap(),
            Packet::Error {
                code: 8,
                message: String::new()
            }
        );
    }
}
