//! HMAC envelopes: `hmac::verify` on arbitrary bytes and keys, and `sign` → `verify`.
//!
//! Input layout: byte 0 = key length `n` (taken modulo the remaining length + 1), then `n`
//! key bytes, then the rest (the envelope candidate; lossily decoded, also the payload).
//!
//! Asserts: `verify(rest, key)` never panics, and when it accepts, re-signing the returned
//! payload verifies too; `verify(sign(p, k), k) == Ok(p)` for arbitrary `p` and `k`; a
//! changed payload or a changed key byte is refused with `Mismatch`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nemo_events::hmac::{self, Envelope, HmacError};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n) % (rest.len() + 1);
    let (key, envelope) = rest.split_at(n);

    // Arbitrary bytes as an envelope: never panics; an accepted one is consistent.
    if let Ok(payload) = hmac::verify(envelope, key) {
        let env =
            Envelope::parse(envelope).unwrap_or_else(|e| panic!("verified but not parsed: {e}"));
        assert_eq!(env.payload, payload);
        assert_eq!(
            hmac::verify(hmac::sign(&payload, key).as_bytes(), key),
            Ok(payload)
        );
    }

    // Sign then verify, for an arbitrary payload and key.
    let payload = String::from_utf8_lossy(envelope);
    let signed = hmac::sign(&payload, key);
    assert_eq!(
        hmac::verify(signed.as_bytes(), key).as_deref(),
        Ok(&*payload),
        "sign -> verify failed; envelope: {signed:?}"
    );
    assert_eq!(
        Envelope::parse(signed.as_bytes())
            .map(|e| e.to_json())
            .as_deref(),
        Ok(&*signed)
    );

    // Tampering is detected: a changed payload, a changed key byte.
    let mut tampered = Envelope::new(payload.as_ref(), key);
    tampered.payload.push('!');
    assert_eq!(
        hmac::verify(tampered.to_json().as_bytes(), key),
        Err(HmacError::Mismatch)
    );
    if let Some((&first, tail)) = key.split_first() {
        // Flipping a bit changes the (zero-padded or hashed) HMAC key itself. Appending a NUL
        // byte would not (a key shorter than the block is zero-padded), so that is not tested.
        let mut other = vec![first ^ 1];
        other.extend_from_slice(tail);
        assert_eq!(
            hmac::verify(signed.as_bytes(), &other),
            Err(HmacError::Mismatch)
        );
    }
});
