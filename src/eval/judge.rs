//! The optional judge: any OpenAI-compatible model scoring each answer for accuracy and style on
//! the 1–3 scales of the LLM Twin's reference evaluation, against the author's own passage, with
//! the short reason it gives for each score kept. A judge that cannot be reached, times out or
//! answers outside the scale is an error naming it: no score is invented.

use serde::Serialize;
use serde_json::{Value, json};

use super::answers::Asker;

/// Tokens a verdict may take.
const VERDICT_TOKENS: u32 = 400;

/// A score and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// 1 (poor), 2 (good) or 3 (excellent).
    pub score: u8,
    /// The judge's reason, in a sentence or two.
    pub reason: String,
}

/// The judge's verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// How correct and complete the answer is, the author's passage being right.
    pub accuracy: Score,
    /// How much it reads like the author's passage.
    pub style: Score,
}

const RUBRIC: &str = "You judge answers written by a model that imitates one author. You are given an \
instruction, the author's own passage answering it (take it as correct and as the author's style), \
and a candidate answer. Score the candidate on two scales.\n\
Accuracy, against the author's passage: 1 = contradicts it or is mostly wrong or off-topic; \
2 = mostly right, with small errors or omissions; 3 = right and as complete as the passage.\n\
Style, against the author's passage: 1 = reads like another writer (tone, vocabulary, sentence \
shape, person); 2 = close in places, off in others; 3 = could pass for the author.\n\
Reply with JSON only: {\"accuracy\": {\"reason\": \"...\", \"score\": 1|2|3}, \
\"style\": {\"reason\": \"...\", \"score\": 1|2|3}}";

/// The messages asking for a verdict.
fn messages(instruction: &str, reference: &str, answer: &str) -> Value {
    json!([
        {"role": "system", "content": RUBRIC},
        {"role": "user", "content": format!(
            "Instruction:\n{instruction}\n\nThe author's passage:\n{reference}\n\nCandidate answer:\n{answer}"
        )},
    ])
}

/// Reads a verdict from the judge's text: the first JSON object in it (models often wrap it in
/// a code fence), with both scores on the scale.
pub fn parse(text: &str) -> Result<Verdict, String> {
    let start = text.find('{').ok_or("its answer holds no JSON object")?;
    let end = text.rfind('}').filter(|&e| e > start).ok_or("its answer holds no whole JSON object")?;
    let value: Value =
        serde_json::from_str(&text[start..=end]).map_err(|e| format!("its answer is not valid JSON: {e}"))?;
    let score = |name: &str| -> Result<Score, String> {
        let part = &value[name];
        let score = part["score"]
            .as_u64()
            .or_else(|| part["score"].as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|s| (1..=3).contains(s))
            .ok_or_else(|| format!("its {name} score is not 1, 2 or 3: {}", part["score"]))?;
        Ok(Score {
            score: score as u8,
            reason: part["reason"].as_str().unwrap_or_default().trim().to_string(),
        })
    };
    Ok(Verdict { accuracy: score("accuracy")?, style: score("style")? })
}

/// Asks `judge` for its verdict on `answer`.
pub async fn judge(
    judge: &Asker,
    instruction: &str,
    reference: &str,
    answer: &str,
    seed: u64,
) -> Result<Verdict, String> {
    let (_, text) = judge.chat(messages(instruction, reference, answer), VERDICT_TOKENS, seed).await?;
    parse(&text).map_err(|e| format!("the judge at {}: {e}: {:.300}", judge.base(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_read_from_a_fenced_answer_and_refused_off_the_scale() {
        let fenced = "```json\n{\"accuracy\": {\"reason\": \"Right.\", \"score\": 3}, \"style\": {\"reason\": \"Formal.\", \"score\": \"1\"}}\n```";
        let verdict = parse(fenced).unwrap();
        assert_eq!(verdict.accuracy, Score { score: 3, reason: "Right.".into() });
        assert_eq!(verdict.style.score, 1);
        assert!(
            parse("{\"accuracy\": {\"score\": 4}, \"style\": {\"score\": 2}}")
                .unwrap_err()
                .contains("accuracy score is not 1, 2 or 3")
        );
        assert!(parse("I think it is good.").unwrap_err().contains("no JSON object"));
        assert!(parse("{\"accuracy\": }").unwrap_err().contains("not valid JSON"));
    }
}
