// Shared helpers of the studio pages: JSON requests with readable errors, element building, formatting.
"use strict";

const musiclm = (() => {
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.field = body ? body.field : null;
      this.retryAfter = body ? body.retry_after : null;
    }
  }

  async function api(path, options = {}) {
    const response = await fetch(path, options);
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) body = await response.json();
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "";
    if (value < 60) return `${value.toFixed(value < 10 ? 1 : 0)} s`;
    return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  }

  function query(name) {
    return new URLSearchParams(window.location.search).get(name);
  }

  return { api, ApiError, el, seconds, query };
})();
