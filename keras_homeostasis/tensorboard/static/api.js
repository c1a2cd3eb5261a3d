// Requests to the plugin's JSON routes, relative to this module's location
// (/data/plugin/homeostasis/static/api.js), whatever page imported it.

const BASE = new URL('../', import.meta.url);

export async function getJson(route, params = {}) {
  const url = new URL(route, BASE);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  const response = await fetch(url, {headers: {Accept: 'application/json'}});
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

export function cssUrl() {
  return new URL('static/style.css', BASE).href;
}
