//! A request's path against a row's template, read as axum's router reads it: segment by
//! segment, a `{name}` standing for any one non-empty segment, and where two templates fit
//! the same path the one with a literal segment first wins (`/users/republish` before
//! `/users/{id}`). The gateway decides with this what it forwards, so it must agree with
//! the router that will answer.

/// Whether `path` (a request's path, percent-encoded as sent, without its query) fits
/// `template`: as many segments, each literal one equal, each `{name}` one not empty. A
/// trailing slash is a segment of its own, as it is to axum: `/orders/` is not `/orders`.
pub fn matches(template: &str, path: &str) -> bool {
    let (mut wanted, mut given) = (segments(template), segments(path));
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(expected), Some(segment)) if fits(expected, segment) => {}
            _ => return false,
        }
    }
}

/// How specific a template is, to rank the ones that fit one path as axum does: a literal
/// segment beats a parameter in the same place, the first difference deciding. A larger
/// value is more specific.
pub(crate) fn specificity(template: &str) -> Vec<bool> {
    segments(template)
        .map(|segment| !is_parameter(segment))
        .collect()
}

/// A path that fits `template`, with `value` for each parameter.
pub(crate) fn example(template: &str, value: &str) -> String {
    segments(template)
        .map(|segment| {
            if is_parameter(segment) {
                value
            } else {
                segment
            }
        })
        .fold(String::new(), |mut path, segment| {
            path.push('/');
            path.push_str(segment);
            path
        })
}

fn fits(wanted: &str, given: &str) -> bool {
    if is_parameter(wanted) {
        !given.is_empty()
    } else {
        wanted == given
    }
}

fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_one_non_empty_segment_and_literals_are_exact() {
        assert!(matches("/orders/{id}", "/orders/0192f1c4"));
        assert!(matches("/products/{sku}", "/products/caf%C3%A9"));
        assert!(matches("/orders", "/orders"));
        assert!(!matches("/orders", "/orders/"));
        assert!(!matches("/orders/{id}", "/orders/"));
        assert!(!matches("/orders/{id}", "/orders/1/cancel"));
        assert!(!matches("/orders/{id}/cancel", "/orders/1"));
        assert!(!matches("/orders", "/Orders"));
        assert!(!matches("/cache/users/{id}", "/orders/cache/users/1"));
    }

    #[test]
    fn a_literal_segment_outranks_a_parameter_and_examples_fit_their_template() {
        assert!(specificity("/users/republish") > specificity("/users/{id}"));
        assert!(specificity("/a/{x}/c") > specificity("/a/{x}/{y}"));
        for template in ["/orders/{id}/cancel", "/auth/keys/{kid}/retire", "/healthz"] {
            let path = example(template, "x");
            assert!(matches(template, &path), "{template}: {path}");
        }
        assert_eq!(example("/orders/{id}/cancel", "x"), "/orders/x/cancel");
    }
}
