//! Unit tests of frame parsing, encoding and the close rules.

use super::*;

fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

#[test]
fn server_text_frame_is_unmasked_and_final() {
    let frame = text(b"hello");
    assert_eq!(&frame[..], b"\x81\x05hello");
    assert_eq!(payload_of(&frame), b"hello");
    let long = text(&[b'x'; 300]);
    assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
}

#[test]
fn parses_and_unmasks_a_client_frame() {
    let mut buf = client_frame(0x1, true, b"{\"type\":\"ping\"}");
    buf.extend_from_slice(b"next");
    let parsed = parse(&mut buf, 1024).expect("valid").expect("complete");
    assert_eq!(parsed.kind, Kind::Text);
    assert_eq!(&buf[parsed.payload.clone()], b"{\"type\":\"ping\"}");
    assert_eq!(&buf[parsed.consumed..], b"next");
}

#[test]
fn partial_frame_needs_more() {
    let mut buf = client_frame(0x1, true, b"0123456789");
    let mut head = buf[..7].to_vec();
    assert_eq!(parse(&mut head, 1024), Ok(None));
    assert!(parse(&mut buf, 1024).expect("valid").is_some());
}

#[test]
fn violations_are_rejected() {
    let mut unmasked = b"\x81\x02hi".to_vec();
    assert_eq!(
        parse(&mut unmasked, 1024),
        Err(FrameError::Protocol("client frame not masked"))
    );
    let mut big = client_frame(0x1, true, &[b'a'; 2000]);
    assert_eq!(parse(&mut big, 1024), Err(FrameError::TooBig(2000)));
    let mut fragmented_ping = client_frame(0x9, false, b"");
    assert!(matches!(
        parse(&mut fragmented_ping, 1024),
        Err(FrameError::Protocol(_))
    ));
}

#[test]
fn too_big_is_detected_from_the_header_alone() {
    let full = client_frame(0x1, true, &[b'a'; 70_000]);
    let mut head = full[..14].to_vec();
    assert_eq!(parse(&mut head, 65_536), Err(FrameError::TooBig(70_000)));
}

#[test]
fn close_frame_carries_its_code() {
    assert_eq!(payload_of(&close(1013)), &1013u16.to_be_bytes());
    assert_eq!(close_reply(&4001u16.to_be_bytes()), Ok(4001));
    assert_eq!(close_reply(b"\x03\xe8bye"), Ok(1000));
    assert_eq!(close_reply(&[]), Ok(close_code::NORMAL));
}

#[test]
fn close_frames_that_break_the_rules_fail_the_connection() {
    // Autobahn 7.3.2: a 1-byte body.
    assert_eq!(close_reply(&[3]).map_err(FrameError::code), Err(1002));
    // Autobahn 7.9.*, 7.13.*: codes no peer may send.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        assert_eq!(
            close_reply(&code.to_be_bytes()).map_err(FrameError::code),
            Err(1002),
            "{code}"
        );
    }
    // Autobahn 7.7.*: codes a peer may send.
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ] {
        assert_eq!(close_reply(&code.to_be_bytes()), Ok(code), "{code}");
    }
    // Autobahn 7.5.1: a reason that is not UTF-8.
    assert_eq!(
        close_reply(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80").map_err(FrameError::code),
        Err(1007)
    );
}

#[test]
fn utf8_is_checked_piece_by_piece_and_fails_fast() {
    let text = "κόσμε €𝄞".as_bytes();
    // Every split point: the first piece passes, then the whole.
    for split in 0..=text.len() {
        assert_eq!(check_utf8(&text[..split], 0, false), Ok(()), "{split}");
        assert_eq!(check_utf8(text, split, true), Ok(()), "{split}");
    }
    // Cut off inside a character: fine until the message is complete.
    let cut = &text[..text.len() - 1];
    assert_eq!(check_utf8(cut, 0, false), Ok(()));
    assert_eq!(check_utf8(cut, 0, true), Err(FrameError::NotUtf8));
    // ... also when the last fragment adds nothing.
    assert_eq!(check_utf8(cut, cut.len(), true), Err(FrameError::NotUtf8));
    // Bytes no continuation can rescue fail at once (Autobahn 6.4.2:
    // \xf4\x90 is past U+10FFFF).
    assert_eq!(check_utf8(b"\xce\xba\xf4\x90", 2, false), Err(FrameError::NotUtf8));
    assert_eq!(check_utf8(b"ab\x80", 2, false), Err(FrameError::NotUtf8));
    // A surrogate (ED A0 80) is not UTF-8, however it is split.
    assert_eq!(check_utf8(b"\xed\xa0", 1, false), Err(FrameError::NotUtf8));
}
