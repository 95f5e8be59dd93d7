// Opens Sluice's WHIP publish page in headless Chromium with fake camera and microphone,
// publishes for SECONDS, then stops (DELETE). Prints what the page saw as JSON; exits
// non-zero if publishing never got going.
//   node web/test/publish.mjs PUBLISH_URL SECONDS
import { chromium } from "playwright-core";

const [url, seconds] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  ],
});
let result = {};
try {
  const context = await browser.newContext({ permissions: ["camera", "microphone"] });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => window.sluicePublish.state !== "idle", null, { timeout: 20000, polling: 200 });
  await page.waitForTimeout(Number(seconds || 10) * 1000);
  result = await page.evaluate(() => window.sluicePublish);
  await page.evaluate(() => document.getElementById("stop").click());
  await page.waitForTimeout(500);
  result.errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.state === "live" ? 0 : 1);
