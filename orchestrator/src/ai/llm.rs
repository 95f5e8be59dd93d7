//! The `echo` LLM stand-in: it answers with the last user message, a token per word
//! (words keep their following space), stopping at `max_tokens` (`finish_reason`
//! `length`) or at the end (`stop`). Streamed as go-livepeer's orchestrator streams:
//! `data: <LLMResponse JSON>\n\n` per chunk, usage cumulative, no `[DONE]` (spec §3.6).
use transport::ai_types::{LlmChoice, LlmMessage, LlmRequest, LlmResponse, LlmUsage};

/// The answer's tokens and why it stopped.
pub fn answer(req: &LlmRequest) -> (Vec<String>, &'static str) {
    let text = req
        .messages
        .as_deref()
        .unwrap_or_default()
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let mut tokens: Vec<String> = text.split_inclusive(char::is_whitespace).map(str::to_owned).collect();
    if tokens.is_empty() {
        tokens.push(String::new());
    }
    let max = req.max_tokens.unwrap_or(256).max(1) as usize;
    if tokens.len() > max {
        tokens.truncate(max);
        (tokens, "length")
    } else {
        (tokens, "stop")
    }
}

/// Tokens in the prompt: words over every message.
pub fn prompt_tokens(req: &LlmRequest) -> i64 {
    req.messages.as_deref().unwrap_or_default().iter().map(|m| m.content.split_whitespace().count() as i64).sum()
}

/// The stream's chunks: one per token, the last carrying `finish_reason`.
pub fn chunks(req: &LlmRequest, id: &str, created: i64) -> Vec<LlmResponse> {
    let (tokens, reason) = answer(req);
    let prompt = prompt_tokens(req);
    let model = req.model.clone().unwrap_or_default();
    let n = tokens.len();
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let done = i + 1 == n;
            LlmResponse {
                choices: vec![LlmChoice {
                    index: 0,
                    finish_reason: done.then(|| reason.to_owned()),
                    delta: Some(LlmMessage { role: "assistant".into(), content: t }),
                    message: None,
                }],
                created,
                id: id.to_owned(),
                model: model.clone(),
                usage: LlmUsage {
                    completion_tokens: i as i64 + 1,
                    prompt_tokens: prompt,
                    total_tokens: prompt + i as i64 + 1,
                },
            }
        })
        .collect()
}

/// The whole answer in one response (`stream: false`).
pub fn complete(req: &LlmRequest, id: &str, created: i64) -> LlmResponse {
    let (tokens, reason) = answer(req);
    let prompt = prompt_tokens(req);
    let completion = tokens.len() as i64;
    LlmResponse {
        choices: vec![LlmChoice {
            index: 0,
            finish_reason: Some(reason.to_owned()),
            delta: None,
            message: Some(LlmMessage { role: "assistant".into(), content: tokens.concat() }),
        }],
        created,
        id: id.to_owned(),
        model: req.model.clone().unwrap_or_default(),
        usage: LlmUsage { completion_tokens: completion, prompt_tokens: prompt, total_tokens: prompt + completion },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str, max: i64) -> LlmRequest {
        LlmRequest {
            messages: Some(vec![
                LlmMessage { role: "system".into(), content: "be brief".into() },
                LlmMessage { role: "user".into(), content: text.into() },
            ]),
            model: Some("echo".into()),
            max_tokens: Some(max),
            stream: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn echoes_and_streams() {
        let c = chunks(&req("hello there world", 256), "id1", 7);
        assert_eq!(c.len(), 3);
        let text: String = c.iter().map(|x| x.choices[0].delta.as_ref().unwrap().content.clone()).collect();
        assert_eq!(text, "hello there world");
        assert_eq!(c[2].finished(), Some("stop"));
        assert_eq!(c[1].finished(), None);
        assert_eq!(c[2].usage, LlmUsage { completion_tokens: 3, prompt_tokens: 5, total_tokens: 8 });
        let whole = complete(&req("hello there world", 2), "id1", 7);
        assert_eq!(whole.choices[0].message.as_ref().unwrap().content, "hello there ");
        assert_eq!(whole.finished(), Some("length"));
    }
}
