// Keyboard-driven side-by-side rating: digits fill the six scales in order, a/s/d set the preference,
// Backspace undoes, Enter submits. One screen per item; no clicks needed beyond the ratings.
(function () {
  const form = document.getElementById("rate-form");
  if (!form) return;
  const scales = Array.from(form.querySelectorAll("fieldset.scale")).filter(f => f.dataset.field !== "preference");
  let at = 0;
  const mark = () => scales.forEach((f, i) => f.classList.toggle("active", i === at));
  mark();
  document.addEventListener("keydown", function (e) {
    if (e.target.matches("input[type=text], textarea")) return;
    if (/^[1-5]$/.test(e.key) && at < scales.length) {
      scales[at].querySelector(`input[value="${e.key}"]`).checked = true;
      at += 1; mark(); e.preventDefault();
    } else if (e.key === "Backspace" && at > 0) {
      at -= 1; scales[at].querySelectorAll("input").forEach(i => { i.checked = false; }); mark(); e.preventDefault();
    } else if ("asd".includes(e.key) && e.key.length === 1) {
      const value = { a: "left", s: "tie", d: "right" }[e.key];
      form.querySelector(`input[name=preference][value=${value}]`).checked = true; e.preventDefault();
    } else if (e.key === "Enter") {
      e.preventDefault(); form.requestSubmit();
    }
  });
  // Clicking a scale moves the keyboard cursor past it.
  scales.forEach((f, i) => f.addEventListener("change", () => { at = Math.max(at, i + 1); mark(); }));
})();

// The playground: stream an answer from the server's gateway, show its sources, and send thumbs as feedback.
(function () {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const root = document.body.dataset.root, csrf = document.body.dataset.csrf;
  const post = (path, body) => fetch(root + path, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
  const history = [];
  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    const prompt = document.getElementById("prompt").value;
    history.push({role: "user", content: prompt});
    const turn = document.createElement("section");
    turn.className = "record";
    const q = document.createElement("div"); q.className = "msg user text"; q.textContent = prompt;
    const a = document.createElement("div"); a.className = "msg assistant text answer-stream";
    turn.append(q, a);
    document.getElementById("conversation").append(turn);
    const response = await post("/api/playground/chat", {model: document.getElementById("model").value,
      messages: history, stream: true});
    const trace = response.headers.get("X-Trace-Id");
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", text = "";
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const events = buffer.split("\n\n"); buffer = events.pop();
      for (const ev of events) {
        const data = ev.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) { text += "[error: " + chunk.error.message + "]"; continue; }
        const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
        text += delta.content || "";
        a.textContent = text;  // textContent: answer text is never parsed as HTML
      }
    }
    history.push({role: "assistant", content: text});
    // The trace is stored before the stream ends: it holds what the rung retrieved and which [n] the answer cited.
    const drawn = await fetch(root + "/api/playground/answers/" + encodeURIComponent(trace));
    if (drawn.ok) {
      const {sources, citations} = await drawn.json();
      const cited = new Set(citations.map(c => c.n));
      if (sources.length) {
        const list = document.createElement("ol"); list.className = "sources help text";
        for (const src of sources) {
          const li = document.createElement("li");
          li.textContent = `[${src.n}] ${src.path}${src.heading ? " — " + src.heading : ""}` + (cited.has(src.n) ? " (cited)" : "");
          if (cited.has(src.n)) li.className = "cited";
          list.append(li);
        }
        turn.append(list);
      }
    }
    for (const [label, thumbs] of [["👍", "up"], ["👎", "down"]]) {
      const b = document.createElement("button"); b.textContent = label; b.className = "thumbs-" + thumbs;
      b.addEventListener("click", async () => {
        const r = await post("/api/feedback", {trace_id: trace, thumbs: thumbs});
        b.disabled = r.ok; b.textContent = label + (r.ok ? " saved" : " failed");
      });
      turn.append(b);
    }
  });
})();
