// Opens a page in headless Chromium (Debian's /usr/bin/chromium, nothing downloaded) and drives
// it over the DevTools protocol on a pipe (--remote-debugging-pipe: no port, no WebSocket).
// It records every request the page makes (file: and data: included), evaluates expressions
// and takes full-page screenshots. Used by the report page's test and by
// scripts/report-screenshot.mjs (docs/report.png).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';

/** Flags that keep a headless Chromium quiet and offline here; a fresh profile each time. */
export function chromiumFlags(userDataDir) {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--hide-scrollbars',
    '--remote-debugging-pipe',
    `--user-data-dir=${userDataDir}`,
  ];
}

/**
 * Loads `url` in a new tab of a fresh headless Chromium, `width` CSS pixels wide. Resolves once
 * the page's load event fired. Every call is bounded by `timeoutMs`.
 */
export async function openPage(url, { width = 1280, height = 900, scale = 1, timeoutMs = 30_000 } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'ctmon-chromium-'));
  const child = spawn(CHROMIUM, [...chromiumFlags(profile), 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const [toBrowser, fromBrowser] = [child.stdio[3], child.stdio[4]];
  const pending = new Map();
  const listeners = [];
  let nextId = 0;
  let buffer = '';
  fromBrowser.on('data', (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\0')) >= 0) {
      const message = JSON.parse(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
      if (message.id !== undefined && pending.has(message.id)) {
        const { resolve, reject } = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) reject(new Error(`${message.error.message} (${message.error.code})`));
        else resolve(message.result);
      } else for (const l of listeners) l(message);
    }
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${method}: no answer from Chromium in ${timeoutMs} ms; stderr: ${stderr}`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      toBrowser.write(`${JSON.stringify({ id, method, params, sessionId })}\0`);
    });
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await Promise.race([send('Browser.close').catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(profile, { recursive: true, force: true });
  };

  try {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    const requests = [];
    let loaded;
    const load = new Promise((resolve) => (loaded = resolve));
    listeners.push((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === 'Network.requestWillBeSent') requests.push(m.params.request.url);
      if (m.method === 'Page.loadEventFired') loaded();
    });
    await send('Network.enable', {}, sessionId);
    await send('Page.enable', {}, sessionId);
    await send(
      'Emulation.setDeviceMetricsOverride',
      { width, height, deviceScaleFactor: scale, mobile: false },
      sessionId,
    );
    await send('Page.navigate', { url }, sessionId);
    await Promise.race([
      load,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`${url} did not load in ${timeoutMs} ms`)), timeoutMs),
      ),
    ]);

    return {
      /** URLs of every request the page made, the page itself first. */
      requests,
      /** The value of a JavaScript expression in the page (returned by value). */
      async evaluate(expression) {
        const r = await send('Runtime.evaluate', { expression, returnByValue: true }, sessionId);
        if (r.exceptionDetails) throw new Error(`${expression}: ${r.exceptionDetails.text}`);
        return r.result.value;
      },
      /** A PNG of the whole page, or of `maxHeight` CSS pixels of it from `top`. */
      async screenshot({ top = 0, maxHeight = Infinity } = {}) {
        const { cssContentSize } = await send('Page.getLayoutMetrics', {}, sessionId);
        const clip = {
          x: 0,
          y: top,
          width,
          height: Math.min(Math.ceil(cssContentSize.height) - top, maxHeight),
          scale: 1,
        };
        const { data } = await send(
          'Page.captureScreenshot',
          { format: 'png', clip, captureBeyondViewport: true },
          sessionId,
        );
        return Buffer.from(data, 'base64');
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
