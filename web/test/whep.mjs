// Opens Sluice's player page in WebRTC mode (`?webrtc`, WHEP) in headless Chromium and
// watches for SECONDS. Prints what the page saw as JSON (first frame delay, frames
// decoded, audio energy, connection state); exits non-zero if nothing was decoded.
//   node web/test/whep.mjs PLAYER_URL SECONDS [leave]
// With `leave` the page is closed without DELETE, as a tab that crashes or is killed.
import { chromium } from "playwright-core";

const [url, seconds, leave] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
  ],
});
let result = {};
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => window.sluiceWhep && window.sluiceWhep.state !== "connecting", null, { timeout: 20000, polling: 100 });
  await page.waitForTimeout(Number(seconds || 5) * 1000);
  result = await page.evaluate(() => Object.assign({}, window.sluiceWhep, { currentTime: document.getElementById("v").currentTime }));
  // Leaving the page ends the session (DELETE on its Location), unless told to vanish.
  if (leave !== "leave") {
    await page.evaluate(() => fetch(window.sluiceWhep.resource, { method: "DELETE" }).then((r) => r.status)).then((s) => { result.deleteStatus = s; }).catch(() => {});
  }
  result.errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.framesDecoded > 0 ? 0 : 1);
