//! `report.html`: an evaluation for a person, in one file that loads nothing (inline CSS and
//! SVG, no script): the headline table and the gate's verdict, per-passage NLL of the author's
//! and the control text under both models, the voice figures, retrieval recall by k, and each
//! question's reference, baseline answer and twin answer side by side.

use std::fmt::Write;

use super::report::{Compared, Evaluation};
use super::stats::Estimate;

/// Escapes text for HTML.
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

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}\
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#17672d;font-weight:600}\
.fail{color:#a11;font-weight:600}.answers td{white-space:pre-wrap;font-size:13px;max-width:24em}svg{background:#fafafa;border:1px solid #ddd}\
.muted{color:#666}";

fn interval(e: &Estimate) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", e.value, e.low, e.high)
}

fn compared_row(out: &mut String, name: &str, c: &Compared, better: &str) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td class=num>{:.3}</td><td class=num>{:.3}</td><td class=num>{}</td><td class=num>{}</td><td class=muted>{}</td></tr>",
        escape(name),
        c.baseline.value,
        c.twin.value,
        interval(&c.difference),
        c.difference.n,
        escape(better)
    );
}

/// A scatter of [twin, baseline] per text: baseline on x, twin on y; below the diagonal the twin
/// finds the text likelier.
fn nll_chart(series: &[(&str, &str, &[[f64; 2]])]) -> String {
    let (width, height, pad) = (420.0, 420.0, 40.0);
    let values = series.iter().flat_map(|(_, _, p)| p.iter().flat_map(|v| v.iter().copied()));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !low.is_finite() {
        return String::new();
    }
    let (low, high) = ((low - 0.2).floor(), (high + 0.2).ceil());
    let x = |v: f64| pad + (v - low) / (high - low) * (width - 2.0 * pad);
    let y = |v: f64| height - pad - (v - low) / (high - low) * (height - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='NLL per token per text, twin against baseline'>"
    );
    let _ = write!(
        svg,
        "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#999' stroke-dasharray='4 3'/>",
        x(low),
        y(low),
        x(high),
        y(high)
    );
    let _ = write!(
        svg,
        "<text x='{}' y='{}' font-size='12' text-anchor='middle'>baseline NLL/token</text><text x='12' y='{}' font-size='12' transform='rotate(-90 12 {})' text-anchor='middle'>twin NLL/token</text>",
        width / 2.0,
        height - 8.0,
        height / 2.0,
        height / 2.0
    );
    let _ = write!(
        svg,
        "<text x='{}' y='{}' font-size='11'>{low:.0}</text><text x='{}' y='{}' font-size='11'>{high:.0}</text>",
        pad - 4.0,
        height - pad + 14.0,
        width - pad - 8.0,
        height - pad + 14.0
    );
    for (i, (name, colour, pairs)) in series.iter().enumerate() {
        for p in pairs.iter() {
            let _ = write!(
                svg,
                "<circle class='point' cx='{:.1}' cy='{:.1}' r='3' fill='{colour}' fill-opacity='.6'><title>{}: baseline {:.3}, twin {:.3}</title></circle>",
                x(p[1]),
                y(p[0]),
                escape(name),
                p[1],
                p[0]
            );
        }
        let _ = write!(
            svg,
            "<circle cx='{}' cy='{}' r='5' fill='{colour}'/><text x='{}' y='{}' font-size='12'>{}</text>",
            pad + 10.0,
            pad + 10.0 + 18.0 * i as f64,
            pad + 20.0,
            pad + 14.0 + 18.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Bars of recall by k.
fn recall_chart(ks: &[usize], recall: &[f64]) -> String {
    let (width, height, pad) = (360.0, 200.0, 30.0);
    let bar = (width - 2.0 * pad) / ks.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='retrieval recall by k'>"
    );
    for (i, (k, r)) in ks.iter().zip(recall).enumerate() {
        let h = r * (height - 2.0 * pad);
        let left = pad + i as f64 * bar + 6.0;
        let _ = write!(
            svg,
            "<rect class='bar' x='{left:.1}' y='{:.1}' width='{:.1}' height='{h:.1}' fill='#3b6ea5'><title>recall@{k} {r:.3}</title></rect><text x='{:.1}' y='{:.1}' font-size='12' text-anchor='middle'>{r:.2}</text><text x='{:.1}' y='{}' font-size='12' text-anchor='middle'>@{k}</text>",
            height - pad - h,
            bar - 12.0,
            left + (bar - 12.0) / 2.0,
            height - pad - h - 4.0,
            left + (bar - 12.0) / 2.0,
            height - 10.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole report.
pub fn render(evaluation: &Evaluation) -> String {
    let e = evaluation;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"><title>Twin evaluation: {}</title><style>{STYLE}</style></head><body>",
        escape(&e.dataset.dataset)
    );
    let _ = write!(
        out,
        "<h1>Does the twin write like {}?</h1><p>Dataset <b>{}</b> revision <code>{}</code>: {} held-out passages, {} training passages. \
         Twin: <code>{}</code>{}. Baseline: <code>{}</code>{}. {} questions, answers {}, at most {} tokens; seed {}; control text {}. {:.1} s.</p>",
        escape(if e.dataset.author.is_empty() { "its author" } else { &e.dataset.author }),
        escape(&e.dataset.dataset),
        escape(&e.dataset.revision),
        e.dataset.test_passages,
        e.dataset.train_passages,
        escape(&e.twin.model),
        e.twin.adapter.as_ref().map(|a| format!(" with <code>{}</code>", escape(a))).unwrap_or_default(),
        escape(&e.baseline.model),
        e.baseline.adapter.as_ref().map(|a| format!(" with <code>{}</code>", escape(a))).unwrap_or_default(),
        e.settings.questions,
        escape(&e.settings.decoding),
        e.settings.max_tokens,
        e.settings.seed,
        escape(&e.settings.control),
        e.seconds
    );
    if let Some(gate) = &e.gate {
        if gate.passed {
            out.push_str("<p class=pass>Gate: passed.</p>");
        } else {
            out.push_str("<p class=fail>Gate: failed: ");
            let failed: Vec<String> = gate
                .failed
                .iter()
                .map(|s| match s.value {
                    Some(v) => format!("{} is {v:.3}, under its minimum {}", escape(&s.figure), s.minimum),
                    None => format!("{} was not measured (minimum {})", escape(&s.figure), s.minimum),
                })
                .collect();
            out.push_str(&failed.join("; "));
            out.push_str("</p>");
        }
    }
    out.push_str("<h2>Headline</h2><table><tr><th>measure</th><th>baseline</th><th>twin</th><th>twin − baseline (95% CI)</th><th>n</th><th>better is</th></tr>");
    if let Some(l) = &e.likelihood {
        compared_row(&mut out, "NLL/token, author's held-out answers", &l.author_answers.nll, "lower");
        compared_row(&mut out, "NLL/token, author's held-out text", &l.author_text.nll, "lower");
        compared_row(&mut out, "NLL/token, control text", &l.control_text.nll, "(not the author's)");
    }
    if let Some(a) = &e.answers {
        compared_row(&mut out, "author-likeness, character 3–5-grams", &a.author_likeness, "higher");
        compared_row(&mut out, "author-likeness, embedding", &a.embedding_likeness, "higher");
        if let Some(f) = &a.faithfulness {
            compared_row(&mut out, "answer sentences supported by a retrieved passage", f, "higher");
        }
        if let Some(j) = &a.judge {
            let name = format!("judge ({}): accuracy, 1–3", j.model.as_deref().unwrap_or(&j.judge));
            compared_row(&mut out, &name, &j.accuracy, "higher");
            compared_row(&mut out, "judge: style against the author's passage, 1–3", &j.style, "higher");
        }
    }
    out.push_str("</table><ul>");
    if let Some(l) = &e.likelihood {
        let _ = write!(
            out,
            "<li>Author-specific NLL reduction (the author's text minus the control's): <b>{}</b> nats/token. A twin that only learned English lowers both; a twin of this author lowers the author's more.</li>",
            interval(&l.author_specific_reduction)
        );
    }
    if let Some(a) = &e.answers {
        let _ = write!(
            out,
            "<li>Win rate, character profile: <b>{}</b>; embedding: <b>{}</b> (share of questions where the twin's answer is closer to the author; 0.5 is a tie).</li>",
            interval(&a.win_rate),
            interval(&a.embedding_win_rate)
        );
        if let Some(d) = &a.delta {
            let _ = write!(
                out,
                "<li>Burrows' Delta to the author over the {} most frequent words (lower is closer): baseline {:.3} ({} words), twin {:.3} ({} words){}.</li>",
                d.most_frequent_words,
                d.baseline,
                d.baseline_words,
                d.twin,
                d.twin_words,
                if d.stable { "" } else { "; <b>unstable</b>: Delta needs about 2,500 words pooled" }
            );
        }
        if let Some(t) = &a.faithfulness_threshold {
            let _ = write!(
                out,
                "<li>A sentence counts as supported at cosine ≥ {:.2}, the threshold that best told {} held-out sentences matched with their own source (true-positive rate {:.2}) from the same sentences matched with other documents (false-positive rate {:.2}).</li>",
                t.threshold, t.sentences, t.true_positive_rate, t.false_positive_rate
            );
        }
    }
    for (part, why) in &e.not_measured {
        let _ = write!(out, "<li class=muted>Not measured: {}: {}</li>", escape(part), escape(why));
    }
    out.push_str("</ul>");
    if let Some(l) = &e.likelihood {
        out.push_str("<h2>Likelihood per passage</h2><p>Each point is one passage: the baseline's NLL per token across, the twin's up. Below the dashed line the twin finds the passage likelier.</p>");
        out.push_str(&nll_chart(&[
            ("author's held-out text", "#3b6ea5", &l.author_text.per_text),
            ("control text", "#d08a2b", &l.control_text.per_text),
        ]));
    }
    let r = &e.retrieval;
    let _ = write!(
        out,
        "<h2>Retrieval</h2><p>Of {} held-out instructions, the share whose source passage the gateway's search ranks in the top k (MRR {:.3}; {} left out: no chunk holds their passage).</p>{}",
        r.questions,
        r.mrr,
        r.without_source,
        recall_chart(&r.k, &r.recall)
    );
    if let Some(a) = &e.answers {
        out.push_str("<h2>Questions</h2><table class=answers><tr><th>instruction</th><th>the author's passage</th><th>baseline</th><th>twin</th></tr>");
        for item in &a.items {
            let verdict = |i: usize| {
                item.judge.as_ref().map_or(String::new(), |v| {
                    format!(
                        "<br><span class=muted>judge: accuracy {} ({}), style {} ({})</span>",
                        v[i].accuracy.score,
                        escape(&v[i].accuracy.reason),
                        v[i].style.score,
                        escape(&v[i].style.reason)
                    )
                })
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}<br><span class=muted>likeness {:.3}</span>{}</td><td>{}<br><span class=muted>likeness {:.3}</span>{}</td></tr>",
                escape(&item.instruction),
                escape(&item.reference),
                escape(&item.baseline.text),
                item.likeness[1],
                verdict(1),
                escape(&item.twin.text),
                item.likeness[0],
                verdict(0)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>'a' & \"b\"</script>"),
            "&lt;script&gt;&#39;a&#39; &amp; &quot;b&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_nll_chart_has_a_point_per_text() {
        let author = [[2.0, 2.5], [2.2, 2.6]];
        let control = [[3.0, 3.0]];
        let svg = nll_chart(&[("author", "#00f", &author), ("control", "#f80", &control)]);
        assert_eq!(svg.matches("class='point'").count(), 3);
        assert!(nll_chart(&[("none", "#000", &[])]).is_empty());
    }
}
