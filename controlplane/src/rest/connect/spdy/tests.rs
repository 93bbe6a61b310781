use super::*;

#[test]
fn the_dictionary_is_spdy3s_byte_for_byte() {
    let d = dictionary();
    assert_eq!(d.len(), 1423);
    let mut adler = flate2::Compress::new(Compression::default(), true);
    assert_eq!(adler.set_dictionary(d).unwrap(), 0xe3c6_a7c2);
}

#[test]
fn frames_round_trip_through_their_wire_form() {
    let frames = [
        Frame::SynStream {
            id: 1,
            associated: 0,
            priority: 2,
            flags: FIN,
            block: vec![1, 2, 3],
        },
        Frame::SynReply {
            id: 3,
            flags: 0,
            block: vec![9],
        },
        Frame::RstStream { id: 5, status: 3 },
        Frame::Settings(vec![(0, 7, 65536), (1, 4, 100)]),
        Frame::Ping(7),
        Frame::GoAway {
            last_good: 9,
            status: 0,
        },
        Frame::Headers {
            id: 1,
            flags: 0,
            block: vec![],
        },
        Frame::WindowUpdate {
            id: 1,
            delta: 1 << 20,
        },
        Frame::Data {
            id: 3,
            flags: FIN,
            data: b"hello".to_vec(),
        },
    ];
    for f in frames {
        let wire = encode(&f);
        assert_eq!(parse(&wire), Ok(Some((f.clone(), wire.len()))), "{f:?}");
        // Any prefix is an incomplete frame, not an error.
        assert_eq!(parse(&wire[..wire.len() - 1]), Ok(None), "{f:?}");
    }
}

#[test]
fn frames_are_read_from_their_documented_layout() {
    type Parsed = Result<Option<(Frame, usize)>, SpdyError>;
    let cases: &[(&[u8], Parsed)] = &[
        // PING 0x01020304.
        (
            b"\x80\x03\x00\x06\x00\x00\x00\x04\x01\x02\x03\x04",
            Ok(Some((Frame::Ping(0x0102_0304), 12))),
        ),
        // Data on stream 5 with FIN, two bytes, then the next frame's first byte.
        (
            b"\x00\x00\x00\x05\x01\x00\x00\x02hiX",
            Ok(Some((
                Frame::Data {
                    id: 5,
                    flags: FIN,
                    data: b"hi".to_vec(),
                },
                10,
            ))),
        ),
        // RST_STREAM with its reserved bit set on the stream id.
        (
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x80\x00\x00\x01\x00\x00\x00\x05",
            Ok(Some((Frame::RstStream { id: 1, status: 5 }, 16))),
        ),
        // NOOP (type 5, gone from SPDY/3) is skipped as unknown.
        (
            b"\x80\x03\x00\x05\x00\x00\x00\x00",
            Ok(Some((Frame::Other(5), 8))),
        ),
        (
            b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
            Err(SpdyError::Version(2)),
        ),
        (
            b"\x80\x03\x00\x01\x00\x00\x00\x02\x00\x01",
            Err(SpdyError::Short { kind: 1, len: 2 }),
        ),
        (b"\x80\x03\x00", Ok(None)),
    ];
    for (wire, want) in cases {
        assert_eq!(&parse(wire), want, "{wire:?}");
    }
}

#[test]
fn header_blocks_share_one_zlib_context_per_direction() {
    let (mut client, mut server) = (HeaderCodec::default(), HeaderCodec::default());
    let first = client.encode(&[("streamType", "error"), ("port", "80"), ("requestID", "0")]);
    let second = client.encode(&[("streamType", "data"), ("port", "80"), ("requestID", "0")]);
    let got = server.decode(&first).unwrap();
    assert_eq!(header(&got, "streamtype"), Some("error"));
    let got = server.decode(&second).unwrap();
    assert_eq!(
        got,
        vec![
            ("streamtype".to_string(), "data".to_string()),
            ("port".into(), "80".into()),
            ("requestid".into(), "0".into()),
        ]
    );
    // The second block refers back into the first: alone, a fresh context cannot read it.
    assert!(HeaderCodec::default().decode(&second).is_err());
}

#[test]
fn a_value_with_nuls_is_several_values_and_garbage_is_an_error() {
    let mut c = HeaderCodec::default();
    let block = c.encode(&[("x-multi", "a\0b")]);
    assert_eq!(
        HeaderCodec::default().decode(&block).unwrap(),
        vec![
            ("x-multi".to_string(), "a".to_string()),
            ("x-multi".into(), "b".into())
        ]
    );
    assert!(HeaderCodec::default().decode(b"not zlib").is_err());
}
