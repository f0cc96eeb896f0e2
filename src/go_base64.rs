//! base64 as Go's `encoding/base64.StdEncoding` decodes it, which is how the
//! kube-apiserver reads a Secret's `data` (JSON `[]byte`) and go-yaml v2 a
//! `!!binary` scalar: the standard alphabet, padding required, `\r` and `\n`
//! ignored wherever they stand (so base64 wrapped over lines, as `base64`
//! and `openssl base64` print it, reads), stray trailing bits allowed. Any
//! other whitespace is an error, as it is in Go.

use base64::Engine as _;

const GO_STD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// Why Go would refuse a base64 text, in Go's words where it has them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    #[error("illegal base64 data: {0:?} (only line breaks may break base64 up)")]
    Whitespace(char),
    #[error("illegal base64 data: {0:?}")]
    Byte(char),
    #[error("illegal base64 data: its length or padding is wrong")]
    Length,
    #[error("illegal base64 data: {0:?} at the end")]
    LastSymbol(char),
}

/// The bytes `text` encodes, or why Go would refuse it.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let compact: std::borrow::Cow<'_, str> = if text.contains(['\r', '\n']) {
        text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
    } else {
        text.into()
    };
    GO_STD.decode(compact.as_bytes()).map_err(|e| match e {
        base64::DecodeError::InvalidByte(_, b) if b.is_ascii_whitespace() => {
            Base64Error::Whitespace(b as char)
        }
        base64::DecodeError::InvalidByte(_, b) => Base64Error::Byte(b as char),
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
            Base64Error::Length
        }
        base64::DecodeError::InvalidLastSymbol(_, b) => Base64Error::LastSymbol(b as char),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case's Go result, from `json.Unmarshal` into `[]byte` (Go 1.24).
    #[test]
    fn decodes_as_go_does() {
        for ok in [
            "aGVsbG8=",
            "aGVs\nbG8=",
            "aGVs\r\nbG8=",
            "aGVsbG8=\n",
            "\naGVsbG8=",
            // Stray trailing bits: Go's non-strict decoder keeps the bytes.
            "aGVsbG9=",
        ] {
            assert_eq!(decode(ok).as_deref(), Ok(&b"hello"[..]), "{ok:?}");
        }
        assert_eq!(decode("aGVsbA=\n=").as_deref(), Ok(&b"hell"[..]));
        assert_eq!(decode("").as_deref(), Ok(&b""[..]));
        assert_eq!(decode("\n").as_deref(), Ok(&b""[..]));
        for bad in ["aGVs bG8=", "aGVs\tbG8=", "aGVsbG8", "aGVsbG8=aGVs", "!!!!"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(
            decode("aGVs bG8=")
                .unwrap_err()
                .to_string()
                .contains("only line breaks")
        );
    }
}
