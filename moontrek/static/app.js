// The try-it page: one POST to the overlay API per press (the image in the
// body, the quality fields in the X-Registration header), so each press costs
// one unit of the registration rate limit, not two.

const form = document.querySelector("#overlay-form");
const algorithm = form.elements.namedItem("algorithm");
const slider = form.elements.namedItem("transparency");
const sliderValue = document.querySelector("#transparency-value");
const button = form.querySelector("button[type=submit]");
const result = document.querySelector("#result");
const overlay = document.querySelector("#overlay");
let overlayUrl = null;

function show(kind, content) {
  result.className = kind;
  result.replaceChildren(...(Array.isArray(content) ? content : [content]));
}

function fields(entries) {
  const list = document.createElement("dl");
  for (const [name, value] of entries) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
  return list;
}

function circle(c) {
  return c ? `(${c.x.toFixed(1)}, ${c.y.toFixed(1)}) r ${c.radius.toFixed(1)}` : "—";
}

function quality(registration) {
  const circles = registration.circles || {};
  const error = registration.reprojection_error_px;
  return fields([
    ["algorithm", `${registration.algorithm} (${registration.implementation}, ${registration.pipeline} pipeline)`],
    ["inliers", `${registration.inliers} of ${registration.matches} matches`],
    ["error", error === undefined ? "—" : `${error} px`],
    ["circles", `photo ${circle(circles.user)}; model ${circle(circles.model)}`],
    ["milliseconds", `${registration.elapsed_ms} registering, ${registration.drawing_ms} drawing`],
  ]);
}

// Every failure moontrek answers is the JSON envelope (waitress's own refusals
// included); a proxy in front of it may answer plain text or HTML instead.
async function failureMessage(response) {
  const text = await response.text();
  let message;
  try {
    message = JSON.parse(text).error;
  } catch {
    message = undefined;
  }
  if (!message && response.status === 413) {
    // A proxy's own refusal of a body over its limit (nginx: HTML).
    message = "The files are larger than this server accepts: choose smaller images.";
  }
  message = message || text.trim().split("\n")[0] || response.statusText;
  const retry = response.headers.get("Retry-After");
  const when = retry && response.status === 429 ? ` (try again in ${retry} s)` : "";
  return `${response.status}: ${message}${when}`;
}

async function loadAlgorithms() {
  try {
    const response = await fetch("api/registrar");
    if (!response.ok) throw new Error(await failureMessage(response));
    const { payload } = await response.json();
    const options = payload.algorithms.map((entry) => {
      const option = new Option(entry.name, entry.name);
      if (!entry.available) {
        option.disabled = true;
        option.textContent = `${entry.name} (unavailable: ${entry.reason})`;
        option.title = entry.reason;
      }
      return option;
    });
    algorithm.replaceChildren(...options);
    const first = payload.algorithms.find((entry) => entry.available);
    if (first) algorithm.value = first.name;
  } catch (error) {
    show("failed", `The algorithm list could not be loaded: ${error.message}`);
  }
}

async function submit(event) {
  event.preventDefault();
  const body = new FormData();
  for (const name of ["user-file", "model-file"]) {
    const file = form.elements.namedItem(name).files[0];
    if (!file) {
      show("failed", `Choose a file for ${name === "user-file" ? "the photo" : "the model render"}.`);
      return;
    }
    body.append(name, file);
  }
  const layer = form.elements.namedItem("layer-file").files[0];
  if (layer) body.append("layer-file", layer);

  const query = new URLSearchParams({ transparency: slider.value });
  button.disabled = true;
  show("", "Registering…");
  try {
    const response = await fetch(`api/overlay/${encodeURIComponent(algorithm.value)}?${query}`, {
      method: "POST",
      body,
    });
    if (!response.ok) {
      overlay.hidden = true;
      show("failed", await failureMessage(response));
      return;
    }
    const registration = JSON.parse(response.headers.get("X-Registration") || "{}");
    const image = await response.blob();
    if (overlayUrl) URL.revokeObjectURL(overlayUrl);
    overlayUrl = URL.createObjectURL(image);
    overlay.src = overlayUrl;
    overlay.hidden = false;
    show("ok", quality(registration));
  } catch (error) {
    overlay.hidden = true;
    show("failed", `The request failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

slider.addEventListener("input", () => {
  sliderValue.textContent = Number(slider.value).toFixed(2);
});
form.addEventListener("submit", submit);
loadAlgorithms();
