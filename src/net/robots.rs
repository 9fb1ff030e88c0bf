//! robots.txt as RFC 9309 reads it: the groups naming our product token (else `*`), `allow`
//! and `disallow` rules with `*` and `$`, the longest matching rule deciding, `allow` winning
//! a tie.

/// The longest `Crawl-delay` obeyed; a site asking for more is crawled at this pace.
pub const MAX_CRAWL_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

/// The rules of one robots.txt that apply to one crawler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Robots {
    /// `(allow, pattern)` pairs.
    rules: Vec<(bool, String)>,
    /// The pause between two requests the site asks for (`Crawl-delay`), at most
    /// [`MAX_CRAWL_DELAY`].
    pub crawl_delay: Option<std::time::Duration>,
}

impl Robots {
    /// Every path allowed (no robots.txt, or one that could not be found: 4xx).
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Parses robots.txt for the crawler whose product token is `agent` (case-insensitive).
    pub fn parse(text: &str, agent: &str) -> Self {
        let agent = agent.to_ascii_lowercase();
        let mut mine = Vec::new();
        let mut anyone = Vec::new();
        let mut found_mine = false;
        let (mut my_delay, mut any_delay) = (None, None);
        // The agents of the group being read, and whether its rules have started.
        let mut group_agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let Some((key, value)) = line.split_once(':') else { continue };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        group_agents.clear();
                        in_rules = false;
                    }
                    group_agents.push(value.to_ascii_lowercase());
                }
                "crawl-delay" => {
                    in_rules = true;
                    let delay =
                        value.parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).map(|d| {
                            std::time::Duration::from_secs_f64(d.min(MAX_CRAWL_DELAY.as_secs_f64()))
                        });
                    if group_agents.contains(&agent) {
                        my_delay = my_delay.or(delay);
                    }
                    if group_agents.iter().any(|a| a == "*") {
                        any_delay = any_delay.or(delay);
                    }
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue;
                    }
                    let rule = (key == "allow", value.to_string());
                    if group_agents.contains(&agent) {
                        found_mine = true;
                        mine.push(rule.clone());
                    }
                    if group_agents.iter().any(|a| a == "*") {
                        anyone.push(rule);
                    }
                }
                _ => {}
            }
        }
        // A group naming us, even an empty one, replaces the `*` groups.
        let named = text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or_default();
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("user-agent") && v.trim().eq_ignore_ascii_case(&agent)
            })
        });
        if found_mine || named {
            Self { rules: mine, crawl_delay: my_delay }
        } else {
            Self { rules: anyone, crawl_delay: any_delay }
        }
    }

    /// Whether a path (with its query) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        let path = if path.is_empty() { "/" } else { path };
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let length = pattern.len();
                best = match best {
                    Some((l, a)) if l > length || (l == length && a) => Some((l, a)),
                    _ => Some((length, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// Whether a robots.txt pattern matches a path: a prefix match where `*` is any sequence and a
/// final `$` anchors the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let Some(rest) = path.strip_prefix(parts[0]) else { return false };
    let mut rest = rest;
    let last = parts.len() - 1;
    for (index, part) in parts.iter().enumerate().skip(1) {
        if index == last && anchored {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    !anchored || rest.is_empty() || (parts.len() > 1 && parts[last].is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROBOTS: &str = "# example\nUser-agent: *\nDisallow: /private/\nAllow: /private/public.html\n\
        Disallow: /*.pdf$\n\nUser-agent: OtherBot\nDisallow: /\n";

    #[test]
    fn star_group_applies_when_not_named() {
        let robots = Robots::parse(ROBOTS, "twin-operator");
        assert!(robots.allows("/blog/post.html"));
        assert!(!robots.allows("/private/notes.html"));
        assert!(robots.allows("/private/public.html"), "the longer allow wins");
        assert!(!robots.allows("/files/paper.pdf"));
        assert!(robots.allows("/files/paper.pdf?download=1"), "$ anchors the end");
    }

    #[test]
    fn a_named_group_replaces_the_star_group() {
        let text =
            "User-agent: *\nDisallow: /\n\nUser-agent: Twin-Operator\nUser-agent: x\nDisallow: /drafts\n";
        let robots = Robots::parse(text, "twin-operator");
        assert!(robots.allows("/posts/1"));
        assert!(!robots.allows("/drafts/2"));
        let empty =
            Robots::parse("User-agent: *\nDisallow: /\nUser-agent: twin-operator\nAllow:\n", "twin-operator");
        assert!(empty.allows("/anything"));
    }

    #[test]
    fn crawl_delay_is_read_and_capped() {
        let robots = Robots::parse("User-agent: *\nCrawl-delay: 1.5\nDisallow: /tmp\n", "twin-operator");
        assert_eq!(robots.crawl_delay, Some(std::time::Duration::from_millis(1500)));
        let greedy = Robots::parse("User-agent: *\nCrawl-delay: 86400\n", "twin-operator");
        assert_eq!(greedy.crawl_delay, Some(MAX_CRAWL_DELAY));
        assert_eq!(Robots::parse("User-agent: *\nCrawl-delay: soon\n", "x").crawl_delay, None);
    }

    #[test]
    fn missing_robots_txt_allows_everything() {
        assert!(Robots::allow_all().allows("/x"));
        assert!(Robots::parse("User-agent: *\nDisallow:\n", "twin-operator").allows("/x"));
    }
}
