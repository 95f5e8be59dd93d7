// Opens Sluice's player page in headless Chromium and waits until hls.js has played a few
// segments. Prints what it saw as JSON; exits non-zero if playback never got going.
//   node web/test/player.mjs PLAYER_URL [SCREENSHOT.png] [MIN_LEVELS] [WATCH_SECONDS]
// With MIN_LEVELS, playback must also have offered that many renditions and loaded
// fragments from at least two of them (ABR switching). With WATCH_SECONDS it then keeps
// playing that long and reports the stalls (ms) and the live latency hls.js estimated.
import { chromium } from "playwright-core";

const [url, shot, minLevels, watchSeconds] = process.argv.slice(2);
const levels = Number(minLevels || 0);
const watch = Number(watchSeconds || 0);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  let ok = true;
  try {
    await page.waitForFunction(
      () => (window.sluiceFragments || 0) >= 3 && document.getElementById("v").currentTime > 2,
      null,
      { timeout: 40000, polling: 250 },
    );
    if (levels > 0) {
      // Ask for the lowest rendition, then the highest: both must load and play.
      await page.evaluate(() => { window.sluiceHls.currentLevel = 0; });
      await page.waitForFunction(() => window.sluiceLevelsPlayed && window.sluiceLevelsPlayed[0], null, { timeout: 30000, polling: 250 });
      await page.evaluate(() => { window.sluiceHls.currentLevel = window.sluiceHls.levels.length - 1; });
      await page.waitForFunction(
        () => window.sluiceLevelsPlayed[window.sluiceHls.levels.length - 1] && window.sluiceLevel === window.sluiceHls.levels.length - 1,
        null,
        { timeout: 30000, polling: 250 },
      );
    }
    if (watch > 0) {
      const t0 = await page.evaluate(() => document.getElementById("v").currentTime);
      await page.waitForTimeout(watch * 1000);
      const t1 = await page.evaluate(() => document.getElementById("v").currentTime);
      if (t1 - t0 < watch * 0.9) ok = false;
    }
  } catch (e) {
    ok = false;
  }
  const state = await page.evaluate(() => {
    const v = document.getElementById("v");
    return {
      hlsjs: !!window.Hls,
      levels: window.sluiceLevels || [],
      levelsPlayed: Object.keys(window.sluiceLevelsPlayed || {}).length,
      fragments: window.sluiceFragments || 0,
      currentTime: v.currentTime,
      width: v.videoWidth,
      height: v.videoHeight,
      status: document.getElementById("s").textContent,
      parts: window.sluiceParts || 0,
      stalls: window.sluiceStalls || [],
      latency: window.sluiceLatency || [],
      hlsErrors: window.sluiceHlsErrors || [],
    };
  });
  if (shot) await page.screenshot({ path: shot });
  if (levels > 0 && state.levels.length < levels) ok = false;
  console.log(JSON.stringify({ ok, ...state, errors }));
  process.exitCode = ok ? 0 : 1;
} finally {
  await browser.close();
}
