//! Access rules: which peers may see which signals. A plain text file a sysadmin can read
//! and diff, one rule per line:
//!
//! ```text
//! # RULE  PATTERN      PEER...
//! allow   did_my_job   127.0.0.1 10.1.0.0/16 host2.example.org key:host2
//! deny    secret_.*    10.1.2.3
//! ```
//!
//! PATTERN is a regex for the whole signal name. A PEER is an IP address, a CIDR block, a
//! host name (resolved when the file is loaded), `key:ID` (a client with the identity ID)
//! or `*` (anyone). A peer sees a signal when an `allow` rule admits both, and no `deny`
//! rule does: default deny, and an explicit deny wins. A `deny` rule's `key:ID` also
//! denies a client that proved no identity: it may be ID, so not presenting one never
//! dodges a deny.
//!
//! Jobs are admitted the same way, by rules whose PATTERN starts with `job:` (the job's
//! ticks: outcomes and timings, on the status page, `/v1/history` and `/metrics`) or
//! `output:` (that too, and what its last run printed, on the status page):
//!
//! ```text
//! allow   job:.*          10.1.0.0/16
//! allow   output:backup   10.1.2.3
//! ```

use baton_core::{name, Error, Result};
use regex::Regex;
use std::net::{IpAddr, ToSocketAddrs};

/// Who is asking: the connection's address and, if the client presented a certificate that
/// `--keys` lists, that identity's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: IpAddr,
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Anyone,
    Cidr(IpAddr, u8),
    Key(String),
    /// A host name and the addresses it resolved to when the rules were loaded.
    Host(String, Vec<IpAddr>),
}

impl Selector {
    fn admits(&self, peer: &Peer) -> bool {
        match self {
            Selector::Anyone => true,
            Selector::Cidr(net, bits) => in_cidr(peer.addr, *net, *bits),
            Selector::Key(id) => peer.key.as_deref() == Some(id),
            Selector::Host(_, addrs) => addrs.contains(&canonical(peer.addr)),
        }
    }

    /// Whether a `deny` rule with this selector applies: as [`Selector::admits`], except
    /// that `key:ID` also matches a peer that proved no identity (it may be ID).
    fn may_be(&self, peer: &Peer) -> bool {
        match self {
            Selector::Key(_) if peer.key.is_none() => true,
            _ => self.admits(peer),
        }
    }
}

/// What a rule's pattern names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Signal,
    /// A job's ticks: outcomes and timings.
    Job,
    /// A job's ticks and what its runs printed.
    Output,
}

#[derive(Debug, Clone)]
struct Rule {
    allow: bool,
    resource: Resource,
    pattern: Regex,
    peers: Vec<Selector>,
}

impl Rule {
    fn admits_peer(&self, peer: &Peer) -> bool {
        self.peers.iter().any(|s| s.admits(peer))
    }

    fn denies_peer(&self, peer: &Peer) -> bool {
        self.peers.iter().any(|s| s.may_be(peer))
    }
}

/// A parsed access file.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// The largest access file read, so a runaway file cannot exhaust memory.
const MAX_FILE_BYTES: usize = 1024 * 1024;

impl Rules {
    /// Parse the text of an access file; an error names the line.
    pub fn parse(text: &str) -> Result<Rules> {
        Rules::parse_with(text, &resolve)
    }

    /// Parse with a given host-name resolver (tests pass a fixed one).
    pub fn parse_with(text: &str, resolver: &dyn Fn(&str) -> Option<Vec<IpAddr>>) -> Result<Rules> {
        if text.len() > MAX_FILE_BYTES {
            return Err(Error::new("access file larger than 1 MiB"));
        }
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |msg: String| Error::new(format!("line {}: {msg}", i + 1));
            let mut words = line.split_whitespace();
            let allow = match words.next() {
                Some("allow") => true,
                Some("deny") => false,
                Some(other) => {
                    return Err(at(format!("unknown rule '{other}' (use allow or deny)")))
                }
                None => continue,
            };
            let pattern_text = words
                .next()
                .ok_or_else(|| at("missing the signal pattern".into()))?;
            let (resource, regex_text) = if let Some(p) = pattern_text.strip_prefix("job:") {
                (Resource::Job, p)
            } else if let Some(p) = pattern_text.strip_prefix("output:") {
                (Resource::Output, p)
            } else {
                (Resource::Signal, pattern_text)
            };
            let pattern = name::whole_name_regex(regex_text).map_err(|e| at(e.message))?;
            let peers = words
                .map(|w| parse_peer(w, resolver).map_err(|e| at(e.message)))
                .collect::<Result<Vec<_>>>()?;
            if peers.is_empty() {
                return Err(at(format!(
                    "'{pattern_text}' names no peer (an address, CIDR, host name, key:ID or *)"
                )));
            }
            rules.push(Rule {
                allow,
                resource,
                pattern,
                peers,
            });
        }
        Ok(Rules { rules })
    }

    /// Whether any `allow` rule admits this peer at all. A peer admitted to nothing gets
    /// 403 and learns no names.
    pub fn admits_peer(&self, peer: &Peer) -> bool {
        self.rules.iter().any(|r| r.allow && r.admits_peer(peer))
    }

    /// Whether this peer may see the signal `name`.
    pub fn may_see(&self, peer: &Peer, name: &str) -> bool {
        self.decide(peer, name, &[Resource::Signal], &[Resource::Signal])
    }

    /// Whether this peer may see job `job`'s ticks (outcomes and timings): a `job:` or
    /// `output:` rule admits it, and no `job:` or `output:` deny rule names it.
    pub fn may_see_job(&self, peer: &Peer, job: &str) -> bool {
        let both = [Resource::Job, Resource::Output];
        self.decide(peer, job, &both, &both)
    }

    /// Whether this peer may see what job `job`'s runs printed: an `output:` rule admits
    /// it, and no deny rule for the job names it.
    pub fn may_see_output(&self, peer: &Peer, job: &str) -> bool {
        self.decide(
            peer,
            job,
            &[Resource::Output],
            &[Resource::Job, Resource::Output],
        )
    }

    fn decide(&self, peer: &Peer, name: &str, allows: &[Resource], denies: &[Resource]) -> bool {
        let matching = |allow: bool, kinds: &[Resource]| {
            self.rules.iter().any(|r| {
                r.allow == allow
                    && kinds.contains(&r.resource)
                    && if allow {
                        r.admits_peer(peer)
                    } else {
                        r.denies_peer(peer)
                    }
                    && r.pattern.is_match(name)
            })
        };
        matching(true, allows) && !matching(false, denies)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The key ids the rules name (`key:ID`), each once, in order of appearance.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for selector in self.rules.iter().flat_map(|r| &r.peers) {
            if let Selector::Key(id) = selector {
                if !ids.contains(&id.as_str()) {
                    ids.push(id);
                }
            }
        }
        ids
    }
}

fn parse_peer(word: &str, resolver: &dyn Fn(&str) -> Option<Vec<IpAddr>>) -> Result<Selector> {
    if word == "*" {
        return Ok(Selector::Anyone);
    }
    if let Some(id) = word.strip_prefix("key:") {
        baton_identity::validate_id(id)?;
        return Ok(Selector::Key(id.to_string()));
    }
    if let Some((net, bits)) = word.split_once('/') {
        let net: IpAddr = net
            .parse()
            .map_err(|_| Error::new(format!("'{word}' is not a CIDR block")))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| Error::new(format!("'{word}': prefix length must be 0 to {max}")))?;
        return Ok(Selector::Cidr(canonical(net), bits));
    }
    if let Ok(ip) = word.parse::<IpAddr>() {
        let ip = canonical(ip);
        return Ok(Selector::Cidr(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    let valid_host = word.len() <= 253
        && word.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_host {
        return Err(Error::new(format!(
            "'{word}' is not an address, CIDR block, host name, key:ID or *"
        )));
    }
    let addrs = resolver(word)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::new(format!("cannot resolve host name '{word}'")))?;
    Ok(Selector::Host(
        word.to_string(),
        addrs.into_iter().map(canonical).collect(),
    ))
}

fn resolve(host: &str) -> Option<Vec<IpAddr>> {
    (host, 0u16)
        .to_socket_addrs()
        .ok()
        .map(|it| it.map(|a| a.ip()).collect())
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_cidr(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(addr), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, key: Option<&str>) -> Peer {
        Peer {
            addr: addr.parse().unwrap(),
            key: key.map(str::to_string),
        }
    }

    fn rules(text: &str) -> Rules {
        let resolver = |h: &str| match h {
            "host2.example.org" => Some(vec!["10.1.2.2".parse().unwrap()]),
            _ => None,
        };
        Rules::parse_with(text, &resolver).unwrap()
    }

    #[test]
    fn default_deny() {
        let r = rules("");
        assert!(!r.admits_peer(&peer("127.0.0.1", None)));
        assert!(!r.may_see(&peer("127.0.0.1", None), "did_my_job"));
    }

    #[test]
    fn admit_by_address_cidr_host_and_key() {
        let r = rules(
            "allow did_my_job 10.1.2.3\nallow did.* 192.168.0.0/16 # a comment\nallow report host2.example.org\nallow k.* key:host4\n",
        );
        assert!(r.may_see(&peer("10.1.2.3", None), "did_my_job"));
        assert!(
            !r.may_see(&peer("10.1.2.3", None), "did_other"),
            "pattern is per rule"
        );
        assert!(!r.may_see(&peer("10.1.2.4", None), "did_my_job"));
        assert!(r.may_see(&peer("192.168.7.9", None), "did_other"));
        assert!(
            r.may_see(&peer("::ffff:192.168.7.9", None), "did_other"),
            "mapped v4"
        );
        assert!(r.may_see(&peer("10.1.2.2", None), "report"));
        assert!(r.may_see(&peer("8.8.8.8", Some("host4")), "k1"));
        assert!(!r.may_see(&peer("8.8.8.8", Some("host5")), "k1"));
        assert!(!r.admits_peer(&peer("8.8.8.8", None)));
    }

    #[test]
    fn a_key_deny_is_not_dodged_by_not_presenting_a_key() {
        let r = rules("allow did.* 10.0.0.0/8\ndeny did_secret key:host4\n");
        // host4 at an admitted address, signing or not, never sees what is denied to it.
        assert!(!r.may_see(&peer("10.0.0.4", Some("host4")), "did_secret"));
        assert!(!r.may_see(&peer("10.0.0.4", None), "did_secret"));
        // Another signed peer still sees it; everyone still sees the rest.
        assert!(r.may_see(&peer("10.0.0.5", Some("host5")), "did_secret"));
        assert!(r.may_see(&peer("10.0.0.4", None), "did_other"));

        // The same for a job's ticks and output.
        let r = rules("allow output:.* 10.0.0.0/8\ndeny job:payroll key:host4\n");
        for key in [Some("host4"), None] {
            assert!(!r.may_see_job(&peer("10.0.0.4", key), "payroll"));
            assert!(!r.may_see_output(&peer("10.0.0.4", key), "payroll"));
        }
        assert!(r.may_see_output(&peer("10.0.0.5", Some("host5")), "payroll"));
    }

    #[test]
    fn patterns_match_whole_names() {
        let r = rules("allow did 127.0.0.1");
        assert!(!r.may_see(&peer("127.0.0.1", None), "did_my_job"));
        assert!(r.may_see(&peer("127.0.0.1", None), "did"));
    }

    #[test]
    fn explicit_deny_wins() {
        let r = rules("allow .* 10.0.0.0/8\ndeny secret_.* 10.0.0.5\nallow secret_x 10.0.0.5");
        assert!(r.may_see(&peer("10.0.0.5", None), "did_my_job"));
        assert!(!r.may_see(&peer("10.0.0.5", None), "secret_x"));
        assert!(r.may_see(&peer("10.0.0.6", None), "secret_x"));
    }

    #[test]
    fn jobs_and_outputs_have_rules_of_their_own() {
        let r = rules(
            "allow did.* 10.0.0.0/8\nallow job:.* 10.0.0.0/8\ndeny job:secret 10.0.0.0/8\nallow output:backup 10.0.0.5\n",
        );
        let p = peer("10.0.0.5", None);
        assert!(r.may_see_job(&p, "backup") && r.may_see_job(&p, "my_job"));
        assert!(!r.may_see_job(&p, "secret"), "deny wins");
        assert!(r.may_see_output(&p, "backup"));
        assert!(!r.may_see_output(&p, "my_job"), "job: is not output:");
        assert!(!r.may_see_output(&peer("10.0.0.6", None), "backup"));
        assert!(!r.may_see(&p, "backup"), "job rules admit no signal");
        let only_signals = rules("allow did.* 10.0.0.0/8");
        assert!(
            !only_signals.may_see_job(&p, "did_x"),
            "signal rules admit no job"
        );
        let only_jobs = rules("allow job:.* 10.0.0.7");
        assert!(only_jobs.admits_peer(&peer("10.0.0.7", None)));
        assert!(!only_jobs.may_see(&peer("10.0.0.7", None), "did_x"));
    }

    #[test]
    fn ipv6_and_anyone() {
        let r = rules("allow a fd00::/8\nallow b *");
        assert!(r.may_see(&peer("fd00::2", None), "a"));
        assert!(!r.may_see(&peer("fe80::1", None), "a"));
        assert!(r.may_see(&peer("fe80::1", None), "b"));
    }

    #[test]
    fn errors_name_the_line() {
        let bad = |text: &str, line: usize, part: &str| {
            let e = Rules::parse_with(text, &|_| None).unwrap_err().message;
            assert!(
                e.starts_with(&format!("line {line}:")) && e.contains(part),
                "{text:?}: {e}"
            );
        };
        bad("allow a 127.0.0.1\npermit a 1.2.3.4", 2, "unknown rule");
        bad("\n\nallow", 3, "missing the signal pattern");
        bad("allow a", 1, "names no peer");
        bad("allow ( 1.2.3.4", 1, "invalid regex");
        bad("allow a 10.0.0.0/33", 1, "prefix length");
        bad("allow a bad_host!", 1, "not an address");
        bad("allow a nosuch.invalid", 1, "cannot resolve");
        bad("allow a key:", 1, "key");
        bad("allow job:( 1.2.3.4", 1, "invalid regex");
    }
}

#[cfg(test)]
mod fuzz_access {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_access_file_never_panics(text in "((allow|deny|x)? ?[a-z.*|()]{0,8} ?[0-9a-f.:/*key]{0,20}\n){0,6}") {
            match Rules::parse_with(&text, &|_| None) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.message.starts_with("line "), "{}", e.message),
            }
        }
    }
}
