//! Plans, applies and reverts the machine changes the Sluice edge agent needs. Not built yet.
