//! Host classes: names, operating system, architecture and addresses, as CFEngine
//! defines them. [`HostFacts::gather`] reads the system; [`host_classes`] is pure.

use baton_core::name::canonify;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What the host classes are computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host name, short or fully qualified.
    pub name: String,
    /// The resolver's fully qualified name for a short system host name (not filled in
    /// by `gather`: [`resolve_fqdn`]).
    pub fqdn: Option<String>,
    /// Kernel name in lower case (`linux`).
    pub sysname: String,
    /// Kernel release (`6.1.0-18-amd64`).
    pub release: String,
    /// Machine architecture (`x86_64`).
    pub arch: String,
    /// Distribution id and version from os-release (`debian`, `12`).
    pub distro: Option<(String, String)>,
    /// Full Debian point release from /etc/debian_version (`12.11`).
    pub distro_point: Option<String>,
    pub cpus: usize,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub interfaces: Vec<String>,
}

impl HostFacts {
    /// Read this machine's facts; `name` is the host identity in force (`--host`, or the
    /// system host name). Unreadable sources give no classes rather than an error: a
    /// container without /proc/net still answers `baton-if Hr16`.
    pub fn gather(name: &str) -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let release = read("/proc/sys/kernel/osrelease").trim().to_string();
        let sysname = read("/proc/sys/kernel/ostype").trim().to_lowercase();
        HostFacts {
            name: name.to_string(),
            // Asked only where needed (it may cost a DNS query): see `resolve_fqdn`.
            fqdn: None,
            sysname: if sysname.is_empty() {
                std::env::consts::OS.to_string()
            } else {
                sysname
            },
            release,
            arch: std::env::consts::ARCH.to_string(),
            distro: parse_os_release(&read("/etc/os-release")),
            distro_point: Some(read("/etc/debian_version").trim().to_string())
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit())),
            cpus: count_cpus(&read("/sys/devices/system/cpu/online")),
            ipv4: parse_fib_trie(&read("/proc/net/fib_trie")),
            ipv6: parse_if_inet6(&read("/proc/net/if_inet6")),
            interfaces: std::fs::read_dir("/sys/class/net")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// `any` and the classes of a host name, in lower case as CFEngine defines them: for
/// `Host-2.Example.org`, `host_2`, `host_2_example_org`, `example_org` and `org`. Known
/// without reading the system.
pub fn name_classes(name: &str) -> Vec<String> {
    let mut out = vec!["any".to_string()];
    let name = name.trim_end_matches('.').to_lowercase();
    if let Some((short, _)) = name.split_once('.') {
        out.push(canonify(short));
    }
    // The name, then each domain it is in: a.b.org, b.org, org.
    let mut rest = name.as_str();
    loop {
        out.push(canonify(rest));
        match rest.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => rest = parent,
            _ => break,
        }
    }
    out
}

/// The classes CFEngine would define for these facts (plus `any`).
pub fn host_classes(f: &HostFacts) -> Vec<String> {
    let mut out = name_classes(&f.name);
    if let Some(fqdn) = &f.fqdn {
        out.extend(name_classes(fqdn).into_iter().skip(1));
    }
    out.extend(fact_classes(f));
    out
}

/// The fully qualified name of this machine when `name` is its short kernel name, as
/// CFEngine derives `sys.fqhost`: the resolver's canonical name for it (getaddrinfo with
/// AI_CANONNAME: /etc/hosts, DNS, whatever nsswitch.conf says). `None` for a name that
/// has a dot already, for another host's name (`--host` playing another host), and when
/// the resolver knows no longer name.
pub fn resolve_fqdn(name: &str) -> Option<String> {
    if name.contains('.') || !name.eq_ignore_ascii_case(&baton_core::cli::system_host_name()) {
        return None;
    }
    let hints = dns_lookup::AddrInfoHints {
        flags: libc::AI_CANONNAME,
        ..Default::default()
    };
    let canonical = dns_lookup::getaddrinfo(Some(name), None, Some(hints))
        .ok()?
        .filter_map(|a| a.ok())
        .find_map(|a| a.canonname)?;
    let canonical = canonical.trim_end_matches('.').to_lowercase();
    (canonical.contains('.') && canonical.len() <= 253).then_some(canonical)
}

/// The classes of everything but the name: OS, architecture, CPUs, addresses.
pub fn fact_classes(f: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    if !f.sysname.is_empty() {
        let sys = canonify(&f.sysname);
        out.push(sys.clone());
        if !f.arch.is_empty() {
            out.push(format!("{sys}_{}", canonify(&f.arch)));
        }
        if !f.release.is_empty() {
            out.push(format!("{sys}_{}", canonify(&f.release)));
        }
    }
    if !f.arch.is_empty() {
        out.push(canonify(&f.arch));
        let bits = if f.arch.contains("64") || f.arch == "s390x" {
            "64_bit"
        } else {
            "32_bit"
        };
        out.push(bits.to_string());
    }
    if let Some((id, version)) = &f.distro {
        let id = canonify(id);
        out.push(id.clone());
        if !version.is_empty() {
            let major = version.split('.').next().unwrap_or(version);
            out.push(format!("{id}_{}", canonify(major)));
        }
        if let Some(point) = &f.distro_point {
            if point.contains('.') {
                out.push(format!("{id}_{}", canonify(point)));
            }
        }
    }
    if f.cpus > 0 {
        out.push(format!("{}_cpus", f.cpus));
    }
    for ip in &f.ipv4 {
        let o = ip.octets();
        out.push(format!("ipv4_{}", o[0]));
        out.push(format!("ipv4_{}_{}", o[0], o[1]));
        out.push(format!("ipv4_{}_{}_{}", o[0], o[1], o[2]));
        out.push(format!("ipv4_{}_{}_{}_{}", o[0], o[1], o[2], o[3]));
        out.push(format!("{}_{}_{}_{}", o[0], o[1], o[2], o[3]));
    }
    for ip in &f.ipv6 {
        let c = canonify(&ip.to_string());
        out.push(format!("ipv6_{c}"));
        out.push(c);
    }
    for iface in &f.interfaces {
        out.push(format!("net_iface_{}", canonify(iface)));
    }
    out
}

/// CPUs online, from a list like `0-3,6` (as /sys/devices/system/cpu/online has it).
/// One small file, where std's available_parallelism reads the cgroup hierarchy.
fn count_cpus(online: &str) -> usize {
    online
        .trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

/// `ID` and `VERSION_ID` from /etc/os-release.
fn parse_os_release(text: &str) -> Option<(String, String)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let id = field("ID").filter(|s| !s.is_empty())?;
    Some((id, field("VERSION_ID").unwrap_or_default()))
}

/// The local IPv4 addresses in /proc/net/fib_trie: each `|-- A.B.C.D` leaf followed by a
/// `/32 host LOCAL` line.
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.parse().ok();
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out.sort();
    out
}

/// Global and link-local IPv6 addresses in /proc/net/if_inet6, loopback left out (as
/// CFEngine does).
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| {
            u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)
        })
        .map(Ipv6Addr::from)
        .filter(|ip| !ip.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> HostFacts {
        HostFacts {
            name: name.to_string(),
            fqdn: None,
            sysname: "linux".into(),
            release: "6.1.0-18-amd64".into(),
            arch: "x86_64".into(),
            distro: Some(("debian".into(), "12".into())),
            distro_point: Some("12.11".into()),
            cpus: 2,
            ipv4: vec!["10.1.2.3".parse().unwrap()],
            ipv6: vec!["fe80::fc:ff:fe00:1".parse().unwrap()],
            interfaces: vec!["eth0".into()],
        }
    }

    #[test]
    fn like_cfengine_on_debian() {
        let c = host_classes(&facts("host-2.example.org"));
        for want in [
            "any",
            "host_2",
            "host_2_example_org",
            "example_org",
            "linux",
            "linux_x86_64",
            "linux_6_1_0_18_amd64",
            "x86_64",
            "64_bit",
            "debian",
            "debian_12",
            "debian_12_11",
            "2_cpus",
            "ipv4_10",
            "ipv4_10_1",
            "ipv4_10_1_2",
            "ipv4_10_1_2_3",
            "10_1_2_3",
            "ipv6_fe80__fc_ff_fe00_1",
            "fe80__fc_ff_fe00_1",
            "net_iface_eth0",
        ] {
            assert!(c.iter().any(|x| x == want), "missing {want} in {c:?}");
        }
    }

    #[test]
    fn names_are_lower_case_with_every_domain() {
        assert_eq!(
            name_classes("Upstream.Example.ORG."),
            [
                "any",
                "upstream",
                "upstream_example_org",
                "example_org",
                "org"
            ]
        );
        assert_eq!(name_classes("Host1"), ["any", "host1"]);
        let with_fqdn = host_classes(&HostFacts {
            fqdn: Some("upstream.example.org".into()),
            ..facts("upstream")
        });
        for want in ["upstream", "upstream_example_org", "example_org", "org"] {
            assert!(with_fqdn.iter().any(|x| x == want), "{want}: {with_fqdn:?}");
        }
        // Another host's name is never resolved as this machine's.
        assert_eq!(resolve_fqdn("not-this-machine-b4c9"), None);
        assert_eq!(resolve_fqdn("has.a.dot"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-1\n"), 2);
        assert_eq!(count_cpus("0-3,6,8-9"), 7);
        assert_eq!(count_cpus(""), 0);
        assert_eq!(count_cpus("x"), 0);
    }

    #[test]
    fn short_name_has_no_domain_class() {
        let c = host_classes(&facts("host1"));
        assert!(c.contains(&"host1".to_string()));
        assert!(!c.iter().any(|x| x.contains("example")));
    }

    #[test]
    fn reads_proc_formats() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 127.255.255.255\n        /32 link BROADCAST\n     |-- 192.0.2.2\n        /32 host LOCAL\nLocal:\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(trie),
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\nfe8000000000000000fc00fffe000001 04 40 20 80     eth0\nbogus\n";
        assert_eq!(
            parse_if_inet6(inet6),
            vec!["fe80::fc:ff:fe00:1".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n"),
            Some(("debian".into(), "12".into()))
        );
    }
}
