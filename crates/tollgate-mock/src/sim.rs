//! Simulated model quality, for cascades and their evaluation.
//!
//! - **Confidence**: `x-mock-confidence: 0.2` makes the model that unsure: every answer token
//!   gets a log-probability around `ln(0.2)`, and an answer asked to rate itself
//!   (`<confidence>` in a system message) ends with `<confidence>0.20</confidence>`.
//! - **Quizzes**: with `x-mock-accuracy: 0.7`, a last user turn asking `What is A + B?`
//!   (`+`, `-` or `*`) is answered `The answer is N.`, right about 70% of the time over many
//!   questions, and calibrated as real models are: each question gets a confidence (drawn per
//!   model and question, most questions easy, some hard), the answer is right with that
//!   probability, and its log-probabilities say that confidence.
//! - **Grading**: a turn holding `Answer to grade:` (the gateway's `judge` scorer) is answered
//!   with a grade: for a quiz, 0.95 when the graded answer is right and 0.05 when not.

use crate::text::seed;

/// Independent numbers in 0..1 for one model and question, the same on every run: a
/// ChaCha generator seeded from their text (a plain string hash per draw would correlate the
/// draws, and with them a model's confidence and correctness).
struct Draws(rand::rngs::StdRng);

impl Draws {
    fn new(model: &str, question: &str) -> Draws {
        use rand::SeedableRng as _;
        Draws(rand::rngs::StdRng::seed_from_u64(seed(&format!(
            "{model}\u{1f}{question}"
        ))))
    }

    fn next(&mut self) -> f64 {
        use rand::Rng as _;
        self.0.random::<f64>()
    }
}

/// A number in 0..1 from `text`, stable across runs.
fn unit(text: &str) -> f64 {
    Draws::new(text, "").next()
}

/// The arithmetic question in `text` (its last `What is A op B`), and its answer.
pub(crate) fn question(text: &str) -> Option<(String, i64)> {
    let start = text.rfind("What is ")?;
    let rest = &text[start + "What is ".len()..];
    let end = rest.find('?').unwrap_or(rest.len());
    let expr = rest[..end].trim();
    let mut parts = expr.split_whitespace();
    let a: i64 = parts.next()?.parse().ok()?;
    let op = parts.next()?;
    let b: i64 = parts.next()?.parse().ok()?;
    let answer = match op {
        "+" => a.checked_add(b)?,
        "-" => a.checked_sub(b)?,
        "*" | "x" | "×" => a.checked_mul(b)?,
        _ => return None,
    };
    Some((expr.to_owned(), answer))
}

/// How sure `model` is on `question`, for a model right `accuracy` of the time overall, and
/// whether its answer is right (with that probability), and how far off a wrong one is: most
/// questions are easy (confidence 0.79-0.99), the rest hard (0.02-0.62), in the mix that makes
/// the mean confidence equal the accuracy.
pub(crate) fn quiz(model: &str, question: &str, accuracy: f64) -> (f64, bool, f64) {
    let mut draw = Draws::new(model, question);
    let (easy, spread, right, off) = (draw.next(), draw.next(), draw.next(), draw.next());
    // The ends are exact: a model 100% (0%) accurate is always (never) right.
    let c = if accuracy >= 1.0 || accuracy <= 0.0 {
        accuracy.clamp(0.0, 1.0)
    } else {
        // Easy: 0.99 - 0.2 w² (0.79-0.99, mean 0.99 - 0.2/3); hard: 0.02 + 0.6 w² (0.02-0.62,
        // mean 0.22), w uniform: a continuous spread, most of each group near its sure end.
        let (easy_mean, hard_mean) = (0.99 - 0.2 / 3.0, 0.22);
        let easy_share = ((accuracy - hard_mean) / (easy_mean - hard_mean)).clamp(0.0, 1.0);
        if easy < easy_share {
            0.99 - 0.2 * spread * spread
        } else {
            0.02 + 0.6 * spread * spread
        }
    };
    (c, right < c, off)
}

/// The answer text: the right number, or one off by 1 to 9 either way (`off` in 0..1).
pub(crate) fn quiz_answer(truth: i64, right: bool, off: f64) -> String {
    let answer = if right {
        truth
    } else {
        let by = 1 + (off * 18.0) as i64 % 9;
        if off < 0.5 { truth - by } else { truth + by }
    };
    format!("The answer is {answer}.")
}

/// A judge's grade for a grading request, or `None` when `text` asks for none.
pub(crate) fn grade(text: &str) -> Option<String> {
    let at = text.find("Answer to grade:")?;
    let (conversation, answer) = text.split_at(at);
    let Some((_, truth)) = question(conversation) else {
        // Not a quiz: a stable grade from the answer.
        return Some(format!("{:.2}", 0.5 + 0.5 * unit(answer)));
    };
    let said = answer
        .rfind("The answer is ")
        .map(|i| &answer[i + "The answer is ".len()..])
        .and_then(|s| s.trim().trim_end_matches('.').split_whitespace().next())
        .and_then(|n| n.trim_end_matches('.').parse::<i64>().ok());
    Some(if said == Some(truth) { "0.95" } else { "0.05" }.to_owned())
}

/// A token's log-probability for a model this `confidence` sure: around `ln(confidence)`,
/// varying by token so the mean is about `ln(confidence)`.
pub(crate) fn logprob(confidence: f64, token: &str, index: usize) -> f64 {
    let jitter = 0.8 + 0.4 * unit(&format!("{token}\u{1f}{index}"));
    (confidence.clamp(1e-6, 1.0).ln() * jitter).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_read() {
        assert_eq!(
            question("Q: What is 12 + 30?"),
            Some(("12 + 30".into(), 42))
        );
        assert_eq!(question("What is 7 * 6"), Some(("7 * 6".into(), 42)));
        assert_eq!(question("What is the capital?"), None);
    }

    #[test]
    fn accuracy_and_calibration_hold_over_many_questions() {
        for (model, accuracy) in [("weak", 0.70), ("strong", 0.92)] {
            let n = 4000;
            let mut right = 0;
            let mut sure_right = (0, 0);
            for i in 0..n {
                let q = format!("{i} + {}", i * 7);
                let (c, ok, _) = quiz(model, &q, accuracy);
                right += usize::from(ok);
                if c >= 0.9 {
                    sure_right.0 += usize::from(ok);
                    sure_right.1 += 1;
                }
            }
            let acc = right as f64 / n as f64;
            assert!((acc - accuracy).abs() < 0.015, "{model}: {acc}");
            let sure = sure_right.0 as f64 / sure_right.1 as f64;
            assert!(sure > 0.9, "{model}: confident answers are right {sure}");
        }
    }

    #[test]
    fn the_judge_checks_quiz_answers() {
        let conv = "user: What is 2 + 2?\n\nAnswer to grade:\n";
        assert_eq!(
            grade(&format!("{conv}The answer is 4.")).as_deref(),
            Some("0.95")
        );
        assert_eq!(
            grade(&format!("{conv}The answer is 5.")).as_deref(),
            Some("0.05")
        );
        assert_eq!(grade("no grading here"), None);
    }

    #[test]
    fn logprobs_say_the_confidence() {
        let lps: Vec<f64> = (0..200).map(|i| logprob(0.3, "tok", i)).collect();
        let mean = lps.iter().sum::<f64>() / lps.len() as f64;
        assert!((mean.exp() - 0.3).abs() < 0.05, "{}", mean.exp());
    }
}
