//! `Link` header parsing for Ably pagination: `<./messages?...>; rel="next"`. Several relations
//! may come as several headers or comma-separated in one; both are read.

/// Returns the URL of relation `rel` among all `Link` header values.
pub fn find<'a>(values: impl IntoIterator<Item = &'a str>, rel: &str) -> Option<String> {
    for value in values {
        for part in split_links(value) {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let url = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
            let matches = pieces.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_whitespace().any(|r| r == rel))
                    .unwrap_or(false)
            });
            if let (Some(url), true) = (url, matches) {
                return Some(url.to_string());
            }
        }
    }
    None
}

/// Splits a header value at the commas that separate links (not those inside `<...>`).
fn split_links(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in value.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// Resolves a relative link (`./messages?...`) against the URL of the request it came from.
pub fn resolve(base: &url::Url, link: &str) -> Result<url::Url, url::ParseError> {
    base.join(link)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_relations_in_one_or_many_headers() {
        let one = r#"<./messages?start=0&end=1,2&limit=100>; rel="first", <./messages?x=1>; rel="current", <./messages?cursor=5>; rel="next""#;
        assert_eq!(super::find([one], "next").as_deref(), Some("./messages?cursor=5"));
        assert_eq!(super::find([one], "first").as_deref(), Some("./messages?start=0&end=1,2&limit=100"));
        let many = [r#"<./a>; rel="first""#, r#"<./b>; rel="next""#];
        assert_eq!(super::find(many, "next").as_deref(), Some("./b"));
        assert_eq!(super::find([r#"<./a>; rel="first""#], "next"), None);
        let base = url::Url::parse("http://h:1/channels/conversation%3A1/messages?limit=2").unwrap();
        assert_eq!(
            super::resolve(&base, "./messages?cursor=5").unwrap().as_str(),
            "http://h:1/channels/conversation%3A1/messages?cursor=5"
        );
    }
}
