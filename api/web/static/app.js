// GOV.UK Frontend's components (only an enhancement: every page works without JavaScript)
import { initAll } from "/assets/govuk-frontend.min.js";

initAll();
