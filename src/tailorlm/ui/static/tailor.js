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
