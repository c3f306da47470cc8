// One linter for the whole tree: typescript-eslint with type information, so that
// floating promises (a lost alarm waiting to happen) are errors, not warnings.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'docs/**', 'gateway/http/public/vendor/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'no-console': 'off',
    },
  },
  {
    // Plain JavaScript (the bin shim, generators and bench scripts) runs on Node as it is.
    // No type information for them (they are not in a tsconfig), so the type-aware rules are off.
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: globals.node, parserOptions: { projectService: false, project: false } },
  },
  {
    // The dashboard's plain ES modules run in the browser.
    files: ['gateway/http/public/**/*.js'],
    languageOptions: { globals: globals.browser, sourceType: 'module', parserOptions: { projectService: false, project: false } },
  },
);
