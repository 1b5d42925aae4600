// Before first paint: the saved theme, else the system's, so the page never flashes.
// A file, not an inline script: the page's Content-Security-Policy allows scripts from this origin only.
document.documentElement.dataset.theme = localStorage.getItem("copyserve.theme")
  || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
