//! The docs pages' markdown as man-page sections: `## TITLE` starts a section, and its
//! body (paragraphs, code blocks, lists, tables, emphasis, code spans) becomes roff.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// A `## TITLE` section of a docs page and its markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The title in upper case, as man pages write them.
    pub title: String,
    pub body: String,
}

/// The `## ` sections of a page, in order (the `# ` title line before them is dropped).
pub fn sections(md: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_fence = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        match line.strip_prefix("## ") {
            Some(title) if !in_fence => out.push(Section {
                title: title.trim().to_uppercase(),
                body: String::new(),
            }),
            _ => {
                if let Some(s) = out.last_mut() {
                    s.body.push_str(line);
                    s.body.push('\n');
                }
            }
        }
    }
    out
}

/// A section as roff: `.SH TITLE` and its body.
pub fn section_roff(s: &Section) -> String {
    let mut r = Roff::default();
    r.control("SH", &[&s.title]);
    r.markdown(&s.body);
    r.out
}

/// Characters that roff would read as its own, written so it prints them.
fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\e"),
            '-' => s.push_str("\\-"),
            '\'' => s.push_str("\\(aq"),
            '`' => s.push_str("\\(ga"),
            '~' => s.push_str("\\(ti"),
            '^' => s.push_str("\\(ha"),
            _ => s.push(c),
        }
    }
    s
}

#[derive(Default)]
struct Roff {
    out: String,
    /// Inline text of the block being built.
    line: String,
    fonts: Vec<&'static str>,
    /// Nesting of lists: the next number of an ordered one, `None` for bullets.
    lists: Vec<Option<u64>>,
    /// The table being built: rows of cells.
    table: Option<Vec<Vec<String>>>,
    in_code: bool,
}

impl Roff {
    fn control(&mut self, name: &str, args: &[&str]) {
        self.out.push('.');
        self.out.push_str(name);
        for a in args {
            self.out.push(' ');
            if a.contains(' ') || a.is_empty() {
                self.out.push('"');
                self.out.push_str(&a.replace('"', "\\(dq"));
                self.out.push('"');
            } else {
                self.out.push_str(a);
            }
        }
        self.out.push('\n');
    }

    /// Emit the pending inline text as text lines (never read as control lines).
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.line);
        for l in text.split('\n') {
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            if l.starts_with('.') || l.starts_with('\'') {
                self.out.push_str("\\&");
            }
            self.out.push_str(l);
            self.out.push('\n');
        }
    }

    fn font(&mut self, f: &'static str) {
        self.fonts.push(f);
        self.line.push_str(&format!("\\f{f}"));
    }

    fn end_font(&mut self) {
        self.fonts.pop();
        let back = self.fonts.last().copied().unwrap_or("R");
        self.line.push_str(&format!("\\f{back}"));
    }

    fn markdown(&mut self, md: &str) {
        let parser = Parser::new_ext(md, Options::ENABLE_TABLES);
        for event in parser {
            self.event(event);
        }
        self.flush();
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) if self.in_code => {
                for l in t.lines() {
                    let l = escape(l);
                    if l.starts_with('.') {
                        self.out.push_str("\\&");
                    }
                    self.out.push_str(&l);
                    self.out.push('\n');
                }
            }
            Event::Text(t) => self.line.push_str(&escape(&t)),
            Event::Code(t) => {
                self.font("B");
                self.line.push_str(&escape(&t));
                self.end_font();
            }
            Event::SoftBreak => self.line.push('\n'),
            Event::HardBreak => {
                self.flush();
                self.control("br", &[]);
            }
            Event::Rule => {
                self.flush();
                self.control("PP", &[]);
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph if self.table.is_none() && self.lists.is_empty() => {
                self.control("PP", &[]);
            }
            Tag::Heading { level, .. } => {
                self.flush();
                let name = if level <= HeadingLevel::H2 {
                    "SH"
                } else {
                    "SS"
                };
                self.out.push('.');
                self.out.push_str(name);
                self.out.push(' ');
            }
            Tag::CodeBlock(_) => {
                self.flush();
                self.control("PP", &[]);
                self.control("RS", &["4"]);
                self.control("nf", &[]);
                self.in_code = true;
            }
            Tag::List(first) => {
                self.flush();
                if !self.lists.is_empty() {
                    self.control("RS", &[]);
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.flush();
                let mark = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}.");
                        *n += 1;
                        m
                    }
                    _ => "\\(bu".to_string(),
                };
                self.control("IP", &[&mark, "4"]);
            }
            Tag::Emphasis => self.font("I"),
            Tag::Strong => self.font("B"),
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Vec::new());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.push(Vec::new());
                }
            }
            Tag::TableCell => self.line.clear(),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.flush(),
            TagEnd::Heading(_) => {
                let title = std::mem::take(&mut self.line);
                self.out.push_str(&format!("\"{}\"\n", title.trim()));
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                self.control("fi", &[]);
                self.control("RE", &[]);
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if !self.lists.is_empty() {
                    self.control("RE", &[]);
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong => self.end_font(),
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.line).replace('\n', " ");
                if let Some(row) = self.table.as_mut().and_then(|t| t.last_mut()) {
                    row.push(cell.trim().to_string());
                }
            }
            TagEnd::Table => {
                if let Some(rows) = self.table.take() {
                    self.table_roff(&rows);
                }
            }
            _ => {}
        }
    }

    /// A tbl table: the header in bold, a rule, then the rows; the last column wraps.
    fn table_roff(&mut self, rows: &[Vec<String>]) {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        if cols == 0 {
            return;
        }
        self.control("PP", &[]);
        self.control("TS", &[]);
        let mut format = vec!["l"; cols];
        format[cols - 1] = "lx";
        self.out.push_str("allbox;\n");
        self.out.push_str(&format.join(" "));
        self.out.push_str(".\n");
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = (0..cols)
                .map(|c| {
                    let text = row.get(c).cloned().unwrap_or_default();
                    let text = if i == 0 {
                        format!("\\fB{text}\\fR")
                    } else {
                        text
                    };
                    if c == cols - 1 {
                        format!("T{{\n{text}\nT}}")
                    } else {
                        text
                    }
                })
                .collect();
            self.out.push_str(&cells.join("\t"));
            self.out.push('\n');
        }
        self.control("TE", &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roff(md: &str) -> String {
        section_roff(&Section {
            title: "T".into(),
            body: md.into(),
        })
    }

    #[test]
    fn splits_sections_but_not_inside_code() {
        let s =
            sections("# x\n\n## NAME\n\nx - y\n\n## Example: two\n\n```\n## not a title\n```\n");
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["NAME", "EXAMPLE: TWO"]);
        assert!(s[1].body.contains("## not a title"));
    }

    #[test]
    fn text_never_becomes_a_control_line() {
        let r = roff("a line\n.starts with a dot\nand 'quotes' \\ and -dashes\n");
        assert!(r.contains("\\&.starts with a dot"), "{r}");
        assert!(r.contains("\\(aqquotes\\(aq \\e and \\-dashes"), "{r}");
        let code = roff("    .dot in code\n    a\\b\n");
        assert!(code.contains(".nf\n\\&.dot in code\na\\eb\n.fi"), "{code}");
    }

    #[test]
    fn fonts_lists_and_tables() {
        let r = roff("1. **Bold** and `code` and *it*\n2. two\n\n- bullet\n");
        assert!(
            r.contains(".IP 1. 4\n\\fBBold\\fR and \\fBcode\\fR and \\fIit\\fR"),
            "{r}"
        );
        assert!(r.contains(".IP 2. 4\ntwo"), "{r}");
        assert!(r.contains(".IP \\(bu 4\nbullet"), "{r}");
        let t = roff("| a | b |\n| --- | --- |\n| 1 | one `x` |\n");
        assert!(
            t.contains(
                ".TS\nallbox;\nl lx.\n\\fBa\\fR\tT{\n\\fBb\\fR\nT}\n1\tT{\none \\fBx\\fR\nT}\n.TE"
            ),
            "{t}"
        );
    }
}
