//! The device's network activity, read from Linux's `/proc/net` (no tool, no privilege): bytes
//! and packets per interface, TCP and UDP sockets with their states. Read twice, it gives the
//! metrics report the agent sends (`sigil_detect::MetricsReport`: counters as deltas).
//!
//! Hand-written: the formats are a few fixed columns of hex, and no maintained crate reads them
//! without pulling in a process inspector. The parsers skip what they do not understand (a
//! kernel may add columns) and never panic (property-tested).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use sigil_detect::MetricsReport;

/// One reading of `/proc/net`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSnapshot {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub listening_tcp: BTreeSet<u16>,
    pub listening_udp: BTreeSet<u16>,
    pub established: u32,
    /// Remote ends of established and opening (`SYN_SENT`) TCP connections.
    pub endpoints: BTreeSet<SocketAddr>,
}

/// Most sockets read from one table: a device with more is reported by its first ones.
const MAX_SOCKETS: usize = 100_000;

/// Interface counters from `/proc/net/dev`, loopback left out (it is not the network).
pub fn parse_net_dev(text: &str, snapshot: &mut NetSnapshot) {
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        if fields.len() >= 10 {
            snapshot.rx_bytes = snapshot.rx_bytes.saturating_add(fields[0]);
            snapshot.rx_packets = snapshot.rx_packets.saturating_add(fields[1]);
            snapshot.tx_bytes = snapshot.tx_bytes.saturating_add(fields[8]);
            snapshot.tx_packets = snapshot.tx_packets.saturating_add(fields[9]);
        }
    }
}

/// `0100007F:1F90` (IPv4: one little-endian word) or 32 hex digits (IPv6: four words).
fn hex_endpoint(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(address, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in bytes.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16).ok()?;
                word.copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A TCP table (`/proc/net/tcp` or `tcp6`): listening ports, established connections and the
/// remote ends of connections established or being opened.
pub fn parse_tcp(text: &str, snapshot: &mut NetSnapshot) {
    for line in text.lines().skip(1).take(MAX_SOCKETS) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Some(local), Some(remote)) = (hex_endpoint(local), hex_endpoint(remote)) else {
            continue;
        };
        match state {
            "0A" => {
                snapshot.listening_tcp.insert(local.port());
            }
            "01" | "02" => {
                if state == "01" {
                    snapshot.established = snapshot.established.saturating_add(1);
                }
                if !remote.ip().is_loopback() && snapshot.endpoints.len() < sigil_detect::MAX_SET {
                    snapshot.endpoints.insert(remote);
                }
            }
            _ => {}
        }
    }
}

/// A UDP table: sockets bound to a port and not connected (state 07) are listening.
pub fn parse_udp(text: &str, snapshot: &mut NetSnapshot) {
    for line in text.lines().skip(1).take(MAX_SOCKETS) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(_), Some(state)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state == "07"
            && let Some(local) = hex_endpoint(local)
            && local.port() != 0
        {
            snapshot.listening_udp.insert(local.port());
        }
    }
}

/// Read `root`/net/{dev,tcp,tcp6,udp,udp6} (`root` is `/proc` on a device). A table that
/// does not exist (no IPv6) reads as empty.
pub fn read(root: &Path) -> std::io::Result<NetSnapshot> {
    let mut snapshot = NetSnapshot::default();
    let read = |name: &str| match std::fs::read_to_string(root.join("net").join(name)) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    };
    parse_net_dev(&read("dev")?, &mut snapshot);
    parse_tcp(&read("tcp")?, &mut snapshot);
    parse_tcp(&read("tcp6")?, &mut snapshot);
    parse_udp(&read("udp")?, &mut snapshot);
    parse_udp(&read("udp6")?, &mut snapshot);
    Ok(snapshot)
}

fn bounded<T>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    items.into_iter().take(sigil_detect::MAX_SET).collect()
}

/// The report for the interval between two readings (counters that went backwards, after a
/// reboot or an interface reset, count from zero).
pub fn report(previous: &NetSnapshot, current: &NetSnapshot) -> MetricsReport {
    let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
    MetricsReport {
        bytes_in: delta(current.rx_bytes, previous.rx_bytes),
        bytes_out: delta(current.tx_bytes, previous.tx_bytes),
        packets_in: delta(current.rx_packets, previous.rx_packets),
        packets_out: delta(current.tx_packets, previous.tx_packets),
        listening_tcp_ports: bounded(current.listening_tcp.iter().copied()),
        listening_udp_ports: bounded(current.listening_udp.iter().copied()),
        established_tcp_connections: current.established,
        destination_ips: bounded(
            current
                .endpoints
                .iter()
                .map(SocketAddr::ip)
                .collect::<BTreeSet<_>>(),
        ),
        destination_endpoints: bounded(current.endpoints.iter().copied()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0F02000A:C350 0101A8C0:22B3 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   2: 0F02000A:C351 0201A8C0:0016 02 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 5 2 0 0
";
    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999 99 0 0 0 0 0 0 9999 99 0 0 0 0 0 0
  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
";

    #[test]
    fn reads_the_kernel_tables() {
        let mut s = NetSnapshot::default();
        parse_net_dev(DEV, &mut s);
        parse_tcp(TCP, &mut s);
        parse_tcp(TCP6, &mut s);
        parse_udp(UDP, &mut s);
        assert_eq!(
            (s.rx_bytes, s.rx_packets, s.tx_bytes, s.tx_packets),
            (1000, 10, 2000, 20)
        );
        assert_eq!(s.listening_tcp, BTreeSet::from([22, 8080]));
        assert_eq!(s.listening_udp, BTreeSet::from([5353]));
        assert_eq!(s.established, 1);
        let endpoints: Vec<String> = s.endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(endpoints, ["192.168.1.1:8883", "192.168.1.2:22"]);
        let later = NetSnapshot {
            rx_bytes: 1500,
            tx_bytes: 100,
            ..s.clone()
        };
        let r = report(&s, &later);
        assert_eq!(
            (r.bytes_in, r.bytes_out),
            (500, 100),
            "a counter that went back counts from 0"
        );
        assert_eq!(r.destination_ips.len(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_tables_never_panic(text in "(.{0,120}\n){0,8}") {
            let mut s = NetSnapshot::default();
            parse_net_dev(&text, &mut s);
            parse_tcp(&text, &mut s);
            parse_udp(&text, &mut s);
        }

        #[test]
        fn endpoints_round_trip(a in any::<u32>(), port in any::<u16>()) {
            let text = format!("{:08X}:{port:04X}", a.swap_bytes());
            prop_assert_eq!(hex_endpoint(&text), Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)));
        }
    }
}
