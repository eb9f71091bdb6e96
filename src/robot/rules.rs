//! The built-in robot rules: generic words and shapes robots use, and the exceptions a
//! person's browser may carry. Compiled once per detector into one automaton (`super`).

/// One built-in rule: a pattern that marks a robot, and optionally a pattern that, when it also
/// matches, shows the User-Agent is a person after all.
///
/// Patterns are case-insensitive and ASCII-only (`\w`, `\b` and `.` work on bytes).
pub(super) struct Rule {
    pub(super) robot: &'static str,
    pub(super) unless: Option<&'static str>,
}

/// A rule without exception.
const fn rule(robot: &'static str) -> Rule {
    Rule { robot, unless: None }
}

/// A rule with an exception: `robot` marks a robot unless `person` also matches.
const fn unless(robot: &'static str, person: &'static str) -> Rule {
    Rule { robot, unless: Some(person) }
}

/// The built-in robot rules, each case-insensitive, matched anywhere in the User-Agent.
///
/// Generic on purpose: words and shapes, plus the names of widely used robot software. An
/// exception names what a person's browser may carry that looks like the robot token.
#[rustfmt::skip]
pub(super) const RULES: &[Rule] = &[
    // The words robots use for themselves; "bot" but not the phone maker CUBOT.
    rule(r"(?:^|[^u]|(?:^|[^c])u)bots?(?:\b|_)"),
    rule(r"crawl|spider|sipder|scrap[ei]|harvest|archiv|index(?:er|ing)|nutch|heritrix|httrack|larbin"),
    // Fetchers and downloaders, but not Firefox for Android's own fetcher (MozacFetch).
    rule(r"(?:^|[^c])fetch|retriev|download(?:er|/)|extractor|leech|offline|sucker|copier|mirror(?:er|ing)"),
    rule(r"feed|\brss|rss\b|reader|^re[ae]d|aggregat"),
    // Link previews, thumbnails, renderers and other processing of pages.
    rule(r"preview|thumbnail|screenshot|shots\b|snapshot|capture|prerender|render(?:er)?\b|transcod|favicon"),
    rule(r"unfurl|resolver|expander|lookup|metadata|parser|classif|extract|summar"),
    // Monitoring, testing and site-analysis services.
    rule(r"check(?:er|ing|ly|_|\b)|monitor|uptime|status|synthetic|pingdom|pinger\b|probe|diagnos|observatory"),
    rule(r"validat|verif|analy[sz]|audit|inspect|insight|lighthouse|page ?speed|ptst\b|webpagetest|grader"),
    rule(r"optimi[sz]e(?:r|\b)|\btest|test(?:er|ing)?\b|exporter"),
    rule(r"catchpoint|gomez|rigor\b|dareboost|speedcurve|site24x7|dmbrowser"),
    // Security scanners; not the CamScanner app's webview.
    rule(r"(?:^|[^m])scan|zgrab|nmap|nikto|sqlmap|acunetix|openvas|netcraft|burp|watchtowr|nessus|qualys|clamav"),
    // Headless and automated browsers.
    rule(r"headless|phantomjs|slimerjs|selenium|webdriver|puppeteer|playwright|cypress|htmlunit|jsdom|splash\b"),
    // A URL (a robot's contact page) or an HTTP library ("HttpClient", "Go-http-client"); not
    // the PlayStation's libhttp.
    rule(r"(?:^|[^b]|(?:^|[^i])b|(?:^|[^l])ib)http"),
    // A domain name or short link; not a product token named like one ("Miniature.io/6.0"), nor
    // the carrier in Facebook's in-app browser ("FBCR/Vodafone.de").
    unless(
        r"www\.|\b[a-z][a-z0-9-]+\.(?:com|org|net|io|ai|eu|fr|de|ru|ly|gy|me)(?:$|[^a-z0-9/]|/(?:[^0-9]|[0-9.]*[^0-9. ;)]))",
        r"fban/",
    ),
    // An e-mail address.
    rule(r"@[a-z0-9-]+\.[a-z]{2,}|e-?mail"),
    // HTTP libraries, scripting runtimes and automation platforms.
    rule(r"curl|wget|python|urllib|requests/|perl|(?:^|[^e])php|ruby|java/|^java|\(java\)|jakarta|okhttp"),
    rule(r"^go[ -]|golang|node-fetch|axios|undici|^node|powershell|postman|insomnia|reqwest|guzzle|mechanize"),
    rule(r"scrapy|library|\bsdk\b|devtools|[-_]tools\b|workflow|integromat|zapier|ifttt|cache|proxy|cdn/|batch"),
    // Agents, AI assistants and cloud services fetching on someone's behalf.
    unless(r"agent(?:\b|[-_])", r"user-agent:"),
    rule(r"openai|claude|anthropic|perplexity|cloudflare|torrent|discourse|track|unknown version"),
    // Google's fetchers ("Google-Site-Verification", "Google Favicon", "GoogleOther"), not a
    // phone ("Google Pixel") nor the Google app.
    rule(r"google(?:-|other|agent|messages| (?:favicon|search|web|wireless))|-google|weblight"),
    // Link-preview fetchers of messengers and search apps, named at the start.
    rule(r"^whatsapp|^(?:duckduckgo|ddg)[/_]|daumoa|\bdaum[ /]"),
    // Shapes no browser sends. The bare "Name" or "Name/1.2" with no comment (but not a browser
    // naming itself, nor Firefox for Android's fetcher).
    unless(
        r"^[a-z][a-z0-9_.\- ]*(?:/v?[0-9]+(?:\.[0-9]+)*[a-z]?|/[a-z]*)?$",
        r"^(?:mozac|mozilla\b|chrome |firefox\b|opera\b|safari\b)|browser",
    ),
    // "Mozilla/5.0 Name/1.0", "Mozilla/5.0 (compatible; Name/1.0)", "Mozilla/5.0 (Name)".
    rule(r"^mozilla/[0-9.]+ [a-z][\w.-]*(?:/[\w.]+)?$"),
    rule(r"^mozilla/[0-9.]+ \((?:compatible; ?[\w.-]+/v?[0-9][\w.]*;?|[\w-]+(?:/[\w.]+)?)\)$"),
    // A robot naming itself inside the engine's comment; not an agent acting on a person's own
    // request ("Amzn-User").
    unless(r"like gecko; compatible; ", r"-user/"),
    // "Name: ...", "Name, ...", "Name/1.0, ...", a pipe before any comment, no letter at all,
    // markup.
    rule(r"^\w+:|^[\w .-]+,|^[\w .-]+/[\w.]+,|^[^(]*\||^[^a-z]*$|^[<{]"),
];
