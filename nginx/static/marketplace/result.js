// The payments service redirects here with ?onboarding=complete|incomplete after asking
// Stripe itself; this page only shows that outcome. (A file, not inline: the static pages'
// Content-Security-Policy allows scripts of this origin only.)
const outcome = new URLSearchParams(location.search).get("onboarding");
const result = document.getElementById("result");
if (outcome === "complete") {
  result.textContent = "Onboarding complete: payments enabled. Buyers can now pay for your listings.";
  result.className = "ok";
} else if (outcome === "incomplete") {
  result.textContent = "Onboarding is not finished yet: payments are not enabled. Continue where you left off.";
  result.className = "todo";
}
