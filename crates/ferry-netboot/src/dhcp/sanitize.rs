//! Blanking the few malformed options that dhcproto 0.15 would panic on.
//!
//! dhcproto checks the length of a handful of options with `debug_assert!`
//! rather than returning an error (found by the `dhcp_packet` fuzz
//! target), so in a debug build a forged packet with, say, a 2-byte Rapid
//! Commit option panics the decoder. None of these options matter to a
//! boot server, so before decoding, any of them with a length the decoder
//! does not accept is overwritten with PAD (0) bytes, which every DHCP
//! parser skips (RFC 2132 §3.1). The walk only reads the option area's
//! code/length framing; decoding itself stays dhcproto's.

/// Start of the options, after the fixed BOOTP fields and the magic cookie
/// (RFC 2131 §3).
const OPTIONS_START: usize = 240;

/// Whether dhcproto 0.15 decodes option `code` of `len` bytes without a
/// debug assertion.
fn length_accepted(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,        // Rapid Commit (RFC 4039)
        81 => len >= 3,        // Client FQDN (RFC 4702)
        94 => len == 3,        // Client Network Interface Identifier (RFC 4578)
        152..=155 => len == 4, // Bulk Leasequery times (RFC 6926)
        _ => true,
    }
}

/// Overwrites, in place, every option whose length dhcproto would assert on.
pub fn blank_malformed_options(packet: &mut [u8]) {
    let mut i = OPTIONS_START;
    while i < packet.len() {
        let code = packet[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 || i + 1 >= packet.len() {
            return;
        }
        let end = i + 2 + usize::from(packet[i + 1]);
        if end > packet.len() {
            return;
        }
        if !length_accepted(code, end - i - 2) {
            packet[i..end].fill(0);
        }
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_only_bad_lengths() {
        let mut p = vec![0u8; OPTIONS_START];
        p.extend_from_slice(&[53, 1, 1, 80, 2, 9, 9, 80, 0, 94, 3, 1, 2, 3, 255]);
        blank_malformed_options(&mut p);
        assert_eq!(
            &p[OPTIONS_START..],
            &[53, 1, 1, 0, 0, 0, 0, 80, 0, 94, 3, 1, 2, 3, 255]
        );
        // a truncated option is left for the decoder to refuse
        let mut p = vec![0u8; OPTIONS_START];
        p.extend_from_slice(&[80, 9, 1]);
        blank_malformed_options(&mut p);
        assert_eq!(&p[OPTIONS_START..], &[80, 9, 1]);
    }
}
