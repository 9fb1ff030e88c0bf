//! A model's chat template (the Jinja text a GGUF carries as `tokenizer.chat_template`),
//! rendered with minijinja and Python's string methods, as Hugging Face renders it. llama.cpp's
//! own matcher guesses the format from the template's text and gets many wrong.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use crate::serve::api::Turn;

/// ChatML, for a model whose GGUF carries no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled template with the model's special tokens.
pub struct ChatTemplate {
    environment: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts templates may insert.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut environment = Environment::new();
        environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.set_trim_blocks(true);
        environment.set_lstrip_blocks(true);
        environment.add_function("raise_exception", |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        environment
            .add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the model's chat template does not compile: {e}"))?;
        Ok(Self { environment, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The prompt text for `turns`, ending where the assistant's answer begins.
    pub fn render(&self, turns: &[Turn]) -> Result<String, String> {
        let messages: Vec<Message> = turns
            .iter()
            .map(|t| Message {
                role: match t.role {
                    crate::serve::api::Role::System => "system",
                    crate::serve::api::Role::User => "user",
                    crate::serve::api::Role::Assistant => "assistant",
                },
                content: &t.content,
            })
            .collect();
        let template = self.environment.get_template("chat").expect("added at construction");
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| format!("the model's chat template failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::api::Role;

    fn turns() -> Vec<Turn> {
        vec![
            Turn { role: Role::System, content: "Be Paul.".into() },
            Turn { role: Role::User, content: "  Hi?  ".into() },
        ]
    }

    #[test]
    fn chatml_renders_with_the_generation_prompt() {
        let template = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        assert_eq!(
            template.render(&turns()).unwrap(),
            "<|im_start|>system\nBe Paul.<|im_end|>\n<|im_start|>user\n  Hi?  <|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_exceptions_work_as_in_transformers() {
        // The shape of Llama 3's template: bos_token, .strip(), and raise_exception.
        let source = "{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
        let template = ChatTemplate::new(source, "<|begin_of_text|>", "<|eot_id|>").unwrap();
        let text = template.render(&turns()).unwrap();
        assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system"));
        assert!(text.contains("user<|end_header_id|>\n\nHi?<|eot_id|>"));
        let pycompat = ChatTemplate::new("{{ messages[1]['content'].strip().upper() }}", "", "").unwrap();
        assert_eq!(pycompat.render(&turns()).unwrap(), "HI?");
        let raising =
            ChatTemplate::new("{{ raise_exception('Conversation roles must alternate') }}", "", "").unwrap();
        assert!(raising.render(&turns()).unwrap_err().contains("Conversation roles must alternate"));
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
