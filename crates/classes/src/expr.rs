//! CFEngine class expressions: `!` binds tightest, then `.` and `&` (and), then `|` and
//! `||` (or), with parentheses. Where CFEngine 3.21 silently evaluates only a prefix of a
//! malformed expression (`a)`, `(a)(b)`, `a!u`, `a-u`), this parser reports the column.

use baton_core::name::is_name_char;
use baton_core::{Error, Result};
use std::fmt;

/// The longest expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 64 * 1024;
/// The deepest nesting of parentheses accepted.
pub const MAX_DEPTH: usize = 200;

/// A parsed class expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Class(String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// Parse `text`, or say where and why it is not an expression.
    pub fn parse(text: &str) -> Result<Expr> {
        if text.len() > MAX_EXPR_LEN {
            return Err(Error::new(format!(
                "expression too long: {} bytes (at most {MAX_EXPR_LEN})",
                text.len()
            )));
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            end: text.chars().count() + 1,
        };
        let expr = parser.or(0)?;
        match parser.peek() {
            None => Ok(expr),
            Some((Token::Name(_), col)) => Err(syntax(
                *col,
                "two class names need an operator between them ('.', '&' or '|')",
            )),
            Some((Token::RParen, col)) => Err(syntax(*col, "')' without a matching '('")),
            Some((tok, col)) => Err(syntax(*col, &format!("expected an operator, found {tok}"))),
        }
    }

    /// Evaluate with `defined` telling whether a class is set. `any` is always true.
    pub fn eval(&self, defined: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Class(name) => name == "any" || defined(name),
            Expr::Not(inner) => !inner.eval(defined),
            Expr::And(parts) => parts.iter().all(|p| p.eval(defined)),
            Expr::Or(parts) => parts.iter().any(|p| p.eval(defined)),
        }
    }

    /// Every class name the expression mentions, in order of first appearance.
    pub fn operands(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.walk(&mut |name| {
            if !out.contains(&name) {
                out.push(name);
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a str)) {
        match self {
            Expr::Class(name) => f(name),
            Expr::Not(inner) => inner.walk(f),
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| p.walk(f)),
        }
    }
}

impl fmt::Display for Expr {
    /// Fully parenthesised, so the precedence the parser chose is visible.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Expr], op: &str| {
            f.write_str("(")?;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                write!(f, "{p}")?;
            }
            f.write_str(")")
        };
        match self {
            Expr::Class(name) => f.write_str(name),
            Expr::Not(inner) => write!(f, "!{inner}"),
            Expr::And(parts) => join(f, parts, "."),
            Expr::Or(parts) => join(f, parts, "|"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    Not,
    /// `.` or `&`, as the user wrote it.
    And(char),
    /// `|` or `||`, as the user wrote it.
    Or(&'static str),
    LParen,
    RParen,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Name(n) => write!(f, "class name '{n}'"),
            Token::Not => f.write_str("'!'"),
            Token::And(c) => write!(f, "'{c}'"),
            Token::Or(s) => write!(f, "'{s}'"),
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
        }
    }
}

fn syntax(col: usize, what: &str) -> Error {
    Error::new(format!("syntax error at column {col}: {what}"))
}

/// Split `text` into tokens, each with its 1-based column (in characters).
fn lex(text: &str) -> Result<Vec<(Token, usize)>> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().enumerate().peekable();
    while let Some((idx, (byte, c))) = chars.next() {
        let col = idx + 1;
        let token = match c {
            ' ' | '\t' => continue,
            '!' => Token::Not,
            '.' | '&' => Token::And(c),
            '|' => {
                if matches!(chars.peek(), Some((_, (_, '|')))) {
                    chars.next();
                    Token::Or("||")
                } else {
                    Token::Or("|")
                }
            }
            '(' => Token::LParen,
            ')' => Token::RParen,
            c if c.is_ascii() && is_name_char(c as u8) => {
                let mut end = byte + 1;
                while let Some((_, (b, c2))) = chars.peek() {
                    if c2.is_ascii() && is_name_char(*c2 as u8) {
                        end = b + 1;
                        chars.next();
                    } else {
                        break;
                    }
                }
                Token::Name(text[byte..end].to_string())
            }
            other => {
                return Err(syntax(
                    col,
                    &format!(
                        "unexpected character {other:?} (class names use letters, digits and _; operators are ! . & | and parentheses)"
                    ),
                ))
            }
        };
        tokens.push((token, col));
    }
    if tokens.is_empty() {
        return Err(Error::new("empty expression"));
    }
    Ok(tokens)
}

struct Parser<'t> {
    tokens: &'t [(Token, usize)],
    pos: usize,
    /// The column just past the end, for "unexpected end" errors.
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(Token, usize)> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, want: fn(&Token) -> bool) -> bool {
        if self.peek().is_some_and(|(t, _)| want(t)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr> {
        let mut parts = vec![self.and(depth)?];
        while self.eat(|t| matches!(t, Token::Or(_))) {
            parts.push(self.and(depth)?);
        }
        Ok(flatten(parts, Expr::Or))
    }

    fn and(&mut self, depth: usize) -> Result<Expr> {
        let mut parts = vec![self.unary(depth)?];
        while self.eat(|t| matches!(t, Token::And(_))) {
            parts.push(self.unary(depth)?);
        }
        Ok(flatten(parts, Expr::And))
    }

    /// `!` chains are counted, not recursed into, so `!!!!…a` cannot overflow the stack.
    fn unary(&mut self, depth: usize) -> Result<Expr> {
        let mut nots = 0usize;
        while self.eat(|t| *t == Token::Not) {
            nots += 1;
        }
        let inner = self.primary(depth)?;
        Ok(if !nots.is_multiple_of(2) {
            Expr::Not(Box::new(inner))
        } else {
            inner
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Expr> {
        let Some((token, col)) = self.peek().cloned() else {
            return Err(syntax(
                self.end,
                "unexpected end: expected a class name or '('",
            ));
        };
        self.pos += 1;
        match token {
            Token::Name(name) => Ok(Expr::Class(name)),
            Token::LParen => {
                if depth >= MAX_DEPTH {
                    return Err(syntax(
                        col,
                        &format!("parentheses nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let inner = self.or(depth + 1)?;
                if self.eat(|t| *t == Token::RParen) {
                    return Ok(inner);
                }
                match self.peek() {
                    None => Err(syntax(
                        self.end,
                        &format!("'(' at column {col} is never closed"),
                    )),
                    Some((Token::Name(_), c)) => Err(syntax(
                        *c,
                        "two class names need an operator between them ('.', '&' or '|')",
                    )),
                    Some((t, c)) => Err(syntax(
                        *c,
                        &format!("expected an operator or ')', found {t}"),
                    )),
                }
            }
            // `a && b` is shell, not CFEngine (cf-promises rejects it too): say so.
            Token::And('&')
                if self.pos >= 2 && self.tokens[self.pos - 2] == (Token::And('&'), col - 1) =>
            {
                Err(syntax(
                    col - 1,
                    "'&&' is not an operator: write 'and' as '.' or a single '&'",
                ))
            }
            other => Err(syntax(
                col,
                &format!("expected a class name or '(', found {other}"),
            )),
        }
    }
}

fn flatten(mut parts: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        make(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluate `text` with exactly `defined` set, and compare with `want`.
    fn check(text: &str, defined: &[&str], want: bool) {
        let expr = Expr::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(
            expr.eval(&|n| defined.contains(&n)),
            want,
            "{text:?} with {defined:?} (parsed as {expr})"
        );
    }

    /// Parse `text` and expect an error mentioning `column N`.
    fn error_at(text: &str, col: usize) {
        let err = Expr::parse(text).expect_err(text).message;
        assert!(err.contains(&format!("column {col}:")), "{text:?}: {err}");
    }

    #[test]
    fn names() {
        check("a", &["a"], true);
        check("a", &[], false);
        check("A", &["a"], false);
        check("any", &[], true);
        check("9lives", &["9lives"], true);
        check("_x", &["_x"], true);
    }

    #[test]
    fn not_binds_tightest() {
        check("!a", &[], true);
        check("!a.u", &[], false);
        check("!a.u", &["u"], true);
        check("!(a.u)", &["a"], true);
        check("!!a", &["a"], true);
        check("!!!a", &["a"], false);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        check("a|u.v", &["a"], true);
        check("a|u.v", &["u"], false);
        check("a|u.v", &["u", "v"], true);
        check("a.u|v", &["v"], true);
        check("(a|u).v", &["a"], false);
        check("(a|u).v", &["a", "v"], true);
        check("a&u", &["a", "u"], true);
        check("a||u", &["u"], true);
    }

    #[test]
    fn the_seed_expressions() {
        let seed = ["Host1", "Day24", "January", "Year2012", "Hr16", "Min45_50"];
        check("Host1.Day24.January.Year2012.Hr16.Min45_50", &seed, true);
        check("Host2.Day24.January.Year2012.Hr16.Min50_55", &seed, false);
        check(
            "(Host2|Host3|Host4).hostX_did_my_job",
            &["Host3", "hostX_did_my_job"],
            true,
        );
        check("(Host2|Host3|Host4).hostX_did_my_job", &["Host3"], false);
        check(
            "Host2.Host3.Host4.hostX_did_my_job",
            &["Host2", "Host3", "hostX_did_my_job"],
            false,
        );
        check("!succeeded", &[], true);
    }

    #[test]
    fn spaces_around_operators() {
        check(" a . ( u | v ) ", &["a", "v"], true);
        check("! a", &[], true);
        check("a\t|\tu", &["u"], true);
    }

    #[test]
    fn malformed_expressions_name_the_column() {
        error_at("a)", 2);
        error_at("(a)(b)", 4);
        error_at("a!u", 2);
        error_at("a-u", 2);
        error_at("a b", 3);
        error_at("(a b)", 4);
        error_at("a.", 3);
        error_at("a..u", 3);
        error_at("|a", 1);
        error_at("(a", 3);
        error_at("()", 2);
        error_at("a&&u", 2);
        error_at("é", 1);
        assert!(Expr::parse("").is_err());
        assert!(Expr::parse("   ").is_err());
    }

    #[test]
    fn errors_quote_what_the_user_typed() {
        let err = |text: &str| Expr::parse(text).expect_err(text).message;
        let and_and = err("a && b");
        assert!(and_and.contains("'&&' is not an operator"), "{and_and}");
        assert!(!and_and.contains("found '.'"), "{and_and}");
        assert!(err("a&|b").contains("found '|'"));
        assert!(err("a&||b").contains("found '||'"));
        assert!(err("a..b").contains("found '.'"));
        assert!(err("a.&b").contains("found '&'"));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let deep = format!("{}a{}", "(".repeat(30_000), ")".repeat(30_000));
        assert!(Expr::parse(&deep)
            .unwrap_err()
            .message
            .contains("nested deeper"));
        let deeper = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(Expr::parse(&deeper)
            .unwrap_err()
            .message
            .contains("too long"));
        let huge = "a.".repeat(5 * 1024 * 1024);
        assert!(Expr::parse(&huge).unwrap_err().message.contains("too long"));
        let nots = format!("{}a", "!".repeat(60_000));
        check(&nots, &["a"], true);
        let ok_deep = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        check(&ok_deep, &["a"], true);
    }

    #[test]
    fn long_flat_expressions_are_fine() {
        let names: Vec<String> = (0..5000).map(|i| format!("c{i}")).collect();
        let text = names.join("|");
        check(&text, &["c4999"], true);
        check(&names.join("."), &["c1"], false);
    }

    #[test]
    fn operands_in_order_once() {
        let e = Expr::parse("a.(b|!a).c").unwrap();
        assert_eq!(e.operands(), vec!["a", "b", "c"]);
        assert_eq!(e.to_string(), "(a.(b|!a).c)");
    }
}

#[cfg(test)]
mod fuzz_expr {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: an expression or an error that says where, never a panic.
        #[test]
        fn fuzz_expr_never_panics(text in "[abc!.&|() \t_9-]{0,60}") {
            match Expr::parse(&text) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.message.contains("column") || e.message == "empty expression", "{}", e.message),
            }
        }

        /// The fully parenthesised form means the same as the original.
        #[test]
        fn fuzz_expr_display_round_trips(text in "[abc!.&|() ]{1,40}", set in proptest::collection::vec(any::<bool>(), 3)) {
            if let Ok(expr) = Expr::parse(&text) {
                let again = Expr::parse(&expr.to_string()).unwrap();
                let defined = |n: &str| match n { "a" => set[0], "b" => set[1], "c" => set[2], _ => false };
                prop_assert_eq!(expr.eval(&defined), again.eval(&defined));
            }
        }
    }
}
