//! The status page's HTML primitives: escaping, times, and the layout every
//! page shares. Server-rendered, with its style inline and no script but
//! the few lines that follow the live updates, so the page reads the same
//! without JavaScript (it then shows what it held when it was loaded).

use std::fmt::Write;

/// `text` made safe for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as RFC 3339 in UTC, to the second.
pub fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// How far `ms` is from `now_ms`, for a reader: "3.2 s ago", "in 450 ms".
pub fn relative(ms: u64, now_ms: u64) -> String {
    let (gap, past) = match ms <= now_ms {
        true => (now_ms - ms, true),
        false => (ms - now_ms, false),
    };
    let amount = match gap {
        0..1_000 => format!("{gap} ms"),
        1_000..60_000 => format!("{:.1} s", gap as f64 / 1_000.0),
        60_000..3_600_000 => format!("{} min", gap / 60_000),
        _ => format!("{:.1} h", gap as f64 / 3_600_000.0),
    };
    match past {
        true => format!("{amount} ago"),
        false => format!("in {amount}"),
    }
}

/// A `<time>` element: the time of day in UTC (with its date when not
/// today), the exact time and how long ago on hover. Not relative in the
/// text: a live page is sent again only when its text changes.
pub fn time_tag(ms: u64, now_ms: u64) -> String {
    let day = |ms: u64| ms / 86_400_000;
    let shown = match chrono::DateTime::from_timestamp_millis(ms as i64) {
        Some(t) if day(ms) == day(now_ms) => t.format("%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%MZ").to_string(),
        None => format!("{ms} ms"),
    };
    format!(
        "<time datetime=\"{t}\" title=\"{t} ({})\">{shown}</time>",
        relative(ms, now_ms),
        t = time(ms)
    )
}

/// Which part of the page is shown, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Tasks,
    Nodes,
    Modules,
    SignIn,
}

/// What the layout says about the reader's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token is configured and the listener takes no certificates:
    /// nobody may take manual steps here.
    ReadOnly,
    /// Steps may be unlocked (by the token, or over TLS the admin
    /// certificate) and this reader has not.
    SignedOut,
    /// Signed in with the token.
    SignedIn,
    /// Showed the admin certificate over TLS (no sign-out: the browser
    /// shows it with every request).
    Certificate,
}

impl Access {
    /// A reader's rights: `token` says whether it showed the node's admin
    /// token (none: the node has none), `certificates` whether the listener
    /// takes the admin certificate (over TLS), `admin_certificate` whether
    /// the reader showed it.
    pub fn of(token: Option<bool>, certificates: bool, admin_certificate: bool) -> Access {
        match (token, certificates && admin_certificate) {
            (_, true) => Access::Certificate,
            (Some(true), false) => Access::SignedIn,
            (Some(false), false) => Access::SignedOut,
            (None, false) if certificates => Access::SignedOut,
            (None, false) => Access::ReadOnly,
        }
    }

    /// Whether this reader may take manual steps.
    pub fn may_act(self) -> bool {
        matches!(self, Access::SignedIn | Access::Certificate)
    }
}

/// A whole page: `live` is the part the live updates replace, `above` what
/// stays put above it (a filter form being typed in).
pub struct Layout<'a> {
    pub title: &'a str,
    pub section: Section,
    pub access: Access,
    /// The node serving the page, and its cluster.
    pub node: u64,
    pub cluster: &'a str,
    /// A line about the last manual step, if the request carried one.
    pub notice: Option<&'a str>,
    pub above: &'a str,
    pub live: &'a str,
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}\
header a{color:#cfd6e4;text-decoration:none}header a.on{color:#fff;font-weight:600}\
header .who{margin-left:auto;color:#9aa4b8}header form{display:inline}\
main,.above{padding:8px 16px}h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:18px 0 6px}\
table{border-collapse:collapse;background:#fff;margin:4px 0 12px}\
th,td{border:1px solid #dde1e8;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eef0f4}\
.num{text-align:right;font-variant-numeric:tabular-nums}\
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;padding:8px 12px;min-width:120px}\
.card b{display:block;font-size:20px}\
.strip{display:inline-flex;gap:1px}.strip i{width:4px;height:14px;display:inline-block}\
i.ok{background:#2e9d52}i.late{background:#e0a100}i.moved{background:#2f6fd6}i.version{background:#8a4fd0}\
.running{color:#1f7a3d}.paused{color:#8a6d00}.failed,.down,.halted,.unreachable{color:#b3261e;font-weight:600}\
.notice{background:#fff6d6;border:1px solid #e8d48a;padding:6px 10px;margin:8px 16px}\
.error{background:#fde8e6;border-color:#e6a39d}\
button{font:inherit;padding:1px 8px;cursor:pointer}form.step{display:inline;margin:0 2px}\
.bar{display:inline-block;width:120px;height:10px;background:#dde1e8;vertical-align:middle}\
.bar span{display:block;height:10px;background:#2e9d52}\
.muted{color:#6b7385}";

/// Follows the live updates: replaces `<main>` with what the server sends
/// for this address whenever it changes. The stream is closed when the page
/// is left: a browser opens few connections to one host at a time, and
/// streams of pages kept for the back button would use them up.
const SCRIPT: &str = "\
(function(){if(!window.EventSource)return;var es;\
function follow(){es=new EventSource('/live?path='+encodeURIComponent(location.pathname+location.search));\
es.onmessage=function(e){document.getElementById('live').innerHTML=e.data;offline(false);\
document.body.setAttribute('data-live-updates',String(1+Number(document.body.getAttribute('data-live-updates')||0)));};\
es.onerror=function(){offline(true);};}\
function offline(on){var b=document.getElementById('offline');if(b)b.hidden=!on;}\
follow();\
addEventListener('pagehide',function(){es.close();});\
addEventListener('pageshow',function(e){if(e.persisted)follow();});\
})();";

impl Layout<'_> {
    pub fn render(&self) -> String {
        let mut page = String::with_capacity(self.live.len() + 4096);
        let _ = write!(
            page,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{title} · Baton {cluster}</title><style>{STYLE}</style></head><body><header>\
             <strong>Baton</strong><span class=\"muted\">{cluster} · node {node}</span>",
            title = escape(self.title),
            cluster = escape(self.cluster),
            node = self.node,
        );
        for (section, href, label) in [
            (Section::Overview, "/", "Overview"),
            (Section::Tasks, "/tasks", "Tasks"),
            (Section::Nodes, "/nodes", "Nodes"),
            (Section::Modules, "/modules", "Modules and rollouts"),
        ] {
            let on = if section == self.section { " class=\"on\"" } else { "" };
            let _ = write!(page, "<a href=\"{href}\"{on}>{label}</a>");
        }
        match self.access {
            Access::ReadOnly => page.push_str("<span class=\"who\">read-only</span>"),
            Access::SignedOut => page.push_str("<span class=\"who\"><a href=\"/login\">sign in for manual steps</a></span>"),
            Access::SignedIn => page.push_str(
                "<span class=\"who\">signed in · <form method=\"post\" action=\"/logout\"><button>sign out</button></form></span>",
            ),
            Access::Certificate => page.push_str("<span class=\"who\">admin certificate</span>"),
        }
        page.push_str("</header>");
        if let Some(notice) = self.notice {
            let class = if notice.starts_with("refused") || notice.starts_with("failed") {
                "notice error"
            } else {
                "notice"
            };
            let _ = write!(page, "<div class=\"{class}\" id=\"notice\">{}</div>", escape(notice));
        }
        page.push_str(
            "<div class=\"notice error\" id=\"offline\" hidden>Live updates stopped: the node does not answer. \
             What follows may be out of date; they resume when it answers again.</div>",
        );
        if !self.above.is_empty() {
            let _ = write!(page, "<div class=\"above\">{}</div>", self.above);
        }
        let _ = write!(
            page,
            "<main id=\"live\">{}</main><script>{SCRIPT}</script></body></html>",
            self.live
        );
        page
    }
}

/// A manual step's button: a form that POSTs `step` with `fields` to
/// `/act`, and comes back to `back`.
pub fn step_button(label: &str, step: &str, fields: &[(&str, &str)], back: &str) -> String {
    let mut form = format!(
        "<form class=\"step\" method=\"post\" action=\"/act\"><input type=\"hidden\" name=\"step\" value=\"{}\">\
         <input type=\"hidden\" name=\"back\" value=\"{}\">",
        escape(step),
        escape(back)
    );
    for (name, value) in fields {
        let _ = write!(
            form,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        form,
        "<button data-step=\"{}\">{}</button></form>",
        escape(step),
        escape(label)
    );
    form
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_read_as_utc_and_relative_to_now() {
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(relative(9_550, 10_000), "450 ms ago");
        assert_eq!(relative(13_200, 10_000), "in 3.2 s");
        assert_eq!(relative(0, 180_000), "3 min ago");
        assert_eq!(relative(0, 7_200_000), "2.0 h ago");
        let today = time_tag(1_700_000_000_123, 1_700_000_005_000);
        assert!(
            today.contains(">22:13:20Z</time>") && today.contains("(4.9 s ago)"),
            "{today}"
        );
        assert!(time_tag(1_700_000_000_123, 1_700_200_000_000).contains(">2023-11-14 22:13Z<"));
    }

    #[test]
    fn a_reader_may_act_with_the_token_or_over_tls_the_admin_certificate() {
        assert_eq!(Access::of(None, false, false), Access::ReadOnly);
        assert_eq!(Access::of(Some(false), false, false), Access::SignedOut);
        assert_eq!(Access::of(Some(true), false, false), Access::SignedIn);
        // Over TLS, without a token: the certificate is the only way in.
        assert_eq!(Access::of(None, true, false), Access::SignedOut);
        assert_eq!(Access::of(None, true, true), Access::Certificate);
        assert_eq!(Access::of(Some(false), true, true), Access::Certificate);
        // A certificate counts only where the listener takes them.
        assert_eq!(Access::of(None, false, true), Access::ReadOnly);
        assert!(Access::Certificate.may_act() && Access::SignedIn.may_act());
        assert!(!Access::SignedOut.may_act() && !Access::ReadOnly.may_act());
    }

    #[test]
    fn the_layout_names_the_reader_rights_and_escapes_the_notice() {
        let layout = Layout {
            title: "Tasks",
            section: Section::Tasks,
            access: Access::SignedOut,
            node: 2,
            cluster: "prod",
            notice: Some("refused: <no>"),
            above: "",
            live: "<p>rows</p>",
        };
        let page = layout.render();
        assert!(page.contains("<a href=\"/tasks\" class=\"on\">Tasks</a>"));
        assert!(page.contains("sign in for manual steps"));
        assert!(page.contains("notice error") && page.contains("refused: &lt;no&gt;"));
        assert!(page.contains("<main id=\"live\"><p>rows</p></main>"));
        let read_only = Layout {
            access: Access::ReadOnly,
            notice: None,
            ..layout
        }
        .render();
        assert!(read_only.contains("read-only") && !read_only.contains("id=\"notice\""));
        let certificate = Layout {
            access: Access::Certificate,
            notice: None,
            ..layout
        }
        .render();
        assert!(certificate.contains("admin certificate") && !certificate.contains("sign out"));
    }

    #[test]
    fn a_step_button_carries_its_fields_escaped() {
        let button = step_button("Pause", "pause-task", &[("task", "a\"b")], "/tasks?x=1&y=2");
        assert!(button.contains("name=\"step\" value=\"pause-task\""));
        assert!(button.contains("name=\"task\" value=\"a&quot;b\""));
        assert!(button.contains("name=\"back\" value=\"/tasks?x=1&amp;y=2\""));
    }
}
