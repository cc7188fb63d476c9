import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Strings a hostile recording carries; `url` is where an unescaped tag would fetch from. */
export const HOSTILE = {
  hostname: '<script>alert("host")</script>',
  command: (url: string) => ['wrk', `</code><img src=${url}/img onerror=alert(1)>`, "it's"],
  netns: '/var/run/netns/"><svg onload=alert(1)>',
  notice: (url: string) => `<iframe src="${url}/frame"></iframe>`,
  file: '/tmp/<b>run</b>.ndjson',
};

/**
 * The real fixture recording with its header, samples' namespace and a notice replaced by
 * markup, as a file from elsewhere could carry them.
 */
export function hostileRecording(url = 'http://127.0.0.1:9'): string {
  const lines = readFileSync(join(__dirname, '..', 'fixtures', 'recordings', 'table-full.ndjson'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  for (const line of lines) {
    if (line.type === 'header') {
      line.hostname = HOSTILE.hostname;
      line.kernel = `6.1 <b>bold</b>`;
      line.command = HOSTILE.command(url);
      line.netns = HOSTILE.netns;
      line.tool = '<i>tool</i>';
    }
    if (line.type === 'sample') line.netns = HOSTILE.netns;
    if (line.type === 'notice') line.message = HOSTILE.notice(url);
    if (line.type === 'end') line.reason = '<marquee>end</marquee>';
  }
  return `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
}
