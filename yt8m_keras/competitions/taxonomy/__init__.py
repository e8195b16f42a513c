"""IndoML 2024 (NielsenIQ) product taxonomy: receipt lines to supergroup > group > module | brand."""
