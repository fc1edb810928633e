// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * One typed linter for the whole repository (STYLE.md item 17). Source code
 * gets the type-checked recommended rules; tests, benchmarks and examples keep
 * the rules that catch real bugs (floating promises above all) and drop the
 * ones that only fight deliberate test code.
 */
export default defineConfig(
  {
    // Mirrors .gitignore: build output, local data, coverage and personal
    // scratch files are never linted. node_modules is ignored by ESLint
    // already.
    ignores: [
      'dist/',
      'coverage/',
      '.shardchart/',
      '.scratch/',
      'tmp/',
      '**/*.d.ts',
    ],
  },

  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,

  {
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrors: 'all',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // `(...args: any[]) => unknown` is how XState spells "any function";
      // a bare `any` elsewhere still has to be argued for.
      '@typescript-eslint/no-explicit-any': ['error', { ignoreRestArgs: true }],
      // Adapters implement Promise-returning interfaces with bodies that are
      // often synchronous (the memory store). Keeping them `async` is the
      // point: a synchronous throw then becomes a rejection, as the contract
      // promises. Forgotten awaits are caught by no-floating-promises and
      // no-misused-promises instead.
      '@typescript-eslint/require-await': 'off',
      // These catch real bugs and stay errors everywhere, tests included.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },

  {
    // XState's generic types widen to `any` at the edges (AnyStateMachine,
    // snapshots, actor logic), so unsafe-any use in the engine is reported
    // but does not fail the build. Each warning is worth a look.
    files: ['src/**', 'adapters/**', 'machines/**'],
    ignores: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'warn',
      '@typescript-eslint/no-unsafe-assignment': 'warn',
      '@typescript-eslint/no-unsafe-call': 'warn',
      '@typescript-eslint/no-unsafe-member-access': 'warn',
      '@typescript-eslint/no-unsafe-return': 'warn',
    },
  },

  {
    // Tests feed the system deliberately wrong input (`42 as any`), read
    // results they have just checked (`result!`) and pass mock methods to
    // `expect`. no-floating-promises stays on: an un-awaited
    // `expect(...).rejects` passes silently.
    files: [
      'test/**',
      'bench/**',
      'examples/**',
      'machines/**/*.test.ts',
      '**/*.test.ts',
    ],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      '@typescript-eslint/no-unsafe-unary-minus': 'off',
      '@typescript-eslint/no-unsafe-declaration-merging': 'off',
      '@typescript-eslint/no-unsafe-function-type': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },

  {
    // Plain JavaScript (this file and any script) sits outside tsconfig.json,
    // so it is linted without type information.
    files: ['**/*.{js,mjs,cjs}'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
