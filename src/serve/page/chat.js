// The twin's chat page: each question goes to /v1/chat/completions with the conversation so far,
// the answer is shown as it is written (server-sent events), then the passages it drew on.
// Text from the model and the sources is only ever set as text, never as HTML.
"use strict";

const conversation = document.getElementById("conversation");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const send = document.getElementById("send");
const keyInput = document.getElementById("key");
const errorLine = document.getElementById("error");
const history = [];

keyInput.value = sessionStorage.getItem("twin-api-key") || "";
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("twin-api-key", keyInput.value.trim());
  loadName();
});

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = keyInput.value.trim();
  if (key) result.Authorization = "Bearer " + key;
  return result;
}

function showError(message) {
  errorLine.textContent = message;
  errorLine.hidden = !message;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

async function loadName() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) {
    showError(response.status === 401 ? "This endpoint needs its API key." : await errorOf(response));
    return;
  }
  const models = await response.json();
  if (models.data && models.data.length) {
    const name = models.data[0].id;
    document.getElementById("title").textContent = "Chat with " + name;
    document.title = name + " · twin chat";
  }
  showError("");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showSources(turn, sources) {
  if (!sources || !sources.length) return;
  const list = element("ol", "sources");
  list.setAttribute("aria-label", "Sources");
  for (const source of sources) {
    const item = element("li", "source");
    const title = source.title || source.chunk_id;
    if (source.url && /^https?:\/\//.test(source.url)) {
      const link = element("a", "", title);
      link.href = source.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      item.append(link);
    } else {
      item.append(element("span", "", title));
    }
    item.append(element("span", "detail", " (" + source.chunk_id + ", score " + source.score.toFixed(3) + ")"));
    list.append(item);
  }
  turn.append(list);
}

async function ask(text) {
  const turn = element("section", "turn");
  turn.append(element("p", "question", text));
  const answer = element("p", "answer writing");
  turn.append(answer);
  conversation.append(turn);
  history.push({ role: "user", content: text });
  const response = await fetch("v1/chat/completions", {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({ messages: history, stream: true }),
  });
  if (!response.ok) {
    history.pop();
    turn.remove();
    showError(await errorOf(response));
    return;
  }
  try {
    const written = await readAnswer(response, answer, (sources) => showSources(turn, sources));
    history.push({ role: "assistant", content: written });
  } catch (error) {
    history.pop();
    throw error;
  } finally {
    answer.classList.remove("writing");
  }
}

// Reads a streamed answer into `answer` as it comes; calls `onSources` once it has ended.
async function readAnswer(response, answer, onSources) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let written = "";
  let sources = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.sources) sources = chunk.sources;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        written += delta.content;
        answer.textContent = written;
      }
    }
  }
  onSources(sources);
  return written;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  question.value = "";
  send.disabled = true;
  showError("");
  try {
    await ask(text);
  } catch (error) {
    showError("The answer broke off: " + error.message);
  } finally {
    send.disabled = false;
    question.focus();
  }
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

loadName();
