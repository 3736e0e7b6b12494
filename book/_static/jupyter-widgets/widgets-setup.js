// diffbook: glue between the vendored widget manager (embed-amd.js, loaded right after this file),
// RequireJS and the vendored MathJax 3. Loaded only on pages that carry saved widget state.
(function () {
  // 1. Fonts: embed-amd.js looks for its font files relative to the page (404) unless told where it is.
  //    Point it at this folder (the site's _static/jupyter-widgets/): works offline, under any base URL.
  var here = new URL(".", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  if (window.require && window.require.config) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "") } });
  }

  // 2. MathJax: the widgets typeset their descriptions with the MathJax 2 call MathJax.Hub.Queue, which
  //    MathJax 3 removed (jupyter-widgets/ipywidgets#3829), so every widget threw a TypeError. Give
  //    whichever object is window.MathJax (Sphinx's config object, then MathJax 3 itself) a Hub.Queue
  //    that hands the element to MathJax 3; before MathJax 3 has loaded, it typesets the page itself.
  function addHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      Object.defineProperty(mj, "Hub", {
        configurable: true, enumerable: false,
        value: {
          Queue: function (job) {
            var element = job && job[2], m = window.MathJax;
            if (element && m && m.startup && m.startup.promise && m.typesetPromise) {
              m.startup.promise.then(function () { return m.typesetPromise([element]); });
            }
          },
        },
      });
    }
    return mj;
  }
  var current = addHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true, enumerable: true,
    get: function () { return current; },
    set: function (value) { current = addHub(value); },
  });
})();
